"""Per-token linear interpolation of a recurrent model and an n-gram trained on the same corpus,
in /v1/score and /v1/rescore: p = λ p_rnn + (1 − λ) p_ngram for every token."""
import math
import shutil

import pytest

from training.train_ngram import main as train_ngram

TEXTS = ["the cat sat on the mat .", "a bird ran to the river .", "mat the on sat cat the ."]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_corpus, tiny_model_path, tiny_ngram_path):
    directory = tmp_path_factory.mktemp("mix-models")
    shutil.copytree(tiny_model_path, directory / tiny_model_path.name)
    shutil.copytree(tiny_ngram_path, directory / "plain-kn3")  # another tokenizer style: not mixable
    # The same corpus read the same way as the recurrent model: the same tokens and vocabulary.
    train_ngram(["--data", str(tiny_corpus), "--order", "3", "--output", str(directory / "tiny-kn3-wikitext")])
    return directory


@pytest.fixture()
def client(make_client, models_dir):
    return make_client(models_dir=models_dir)


def scores(client, **body):
    response = client.post("/v1/score", json={"texts": TEXTS, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_mixture_is_the_weighted_sum_of_probabilities(client):
    rnn = scores(client, model="tiny-word-lstm")["results"]
    ngram = scores(client, model="tiny-kn3-wikitext")["results"]
    body = scores(client, models=[{"model": "tiny-word-lstm", "weight": 0.7}, {"model": "tiny-kn3-wikitext", "weight": 0.3}],
                  interpolation="linear")
    assert body["model"] == "tiny-word-lstm+tiny-kn3-wikitext" and len(body["models"]) == 2
    for mixed, a, b in zip(body["results"], rnn, ngram):
        assert mixed["tokens"] == a["tokens"]
        expected = [math.log(0.7 * math.exp(x) + 0.3 * math.exp(y)) for x, y in zip(a["token_logprobs"], b["token_logprobs"])]
        assert mixed["token_logprobs"] == pytest.approx(expected, abs=1e-5)
        assert mixed["logprob"] == pytest.approx(sum(expected), abs=1e-4)
    assert body["ranking"][-1] == 2
    # All the weight on one model gives that model's numbers.
    alone = scores(client, models=[{"model": "tiny-word-lstm", "weight": 1.0}, {"model": "tiny-kn3-wikitext", "weight": 0.0}],
                   interpolation="linear")["results"]
    for mixed, a in zip(alone, rnn):
        assert mixed["token_logprobs"] == pytest.approx(a["token_logprobs"], abs=1e-5)


@pytest.mark.parametrize("body, param, message", [
    ({"models": [{"model": "tiny-word-lstm", "weight": 0.5}, {"model": "plain-kn3", "weight": 0.5}], "interpolation": "linear"},
     "models.1.model", "cannot be mixed per token"),
    ({"models": [{"model": "tiny-word-lstm", "weight": 0.5}, {"model": "tiny-kn3-wikitext", "weight": 0.6}], "interpolation": "linear"},
     "models", "sum to 1"),
    ({"models": [{"model": "tiny-word-lstm", "weight": 0.5}, {"model": "tiny-kn3-wikitext", "weight": 0.5}]}, "interpolation", "linear"),
    ({"model": "tiny-word-lstm", "interpolation": "linear"}, "interpolation", "give them instead"),
])
def test_what_cannot_be_mixed_is_refused(client, body, param, message):
    response = client.post("/v1/score", json={"texts": TEXTS, **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param and message in response.json()["error"]["message"]


def test_rescoring_with_the_mixture(client):
    utterance = {"id": "u", "hypotheses": [{"text": t, "acoustic_score": -5.0 * i} for i, t in enumerate(TEXTS)]}
    models = [{"model": "tiny-word-lstm", "weight": 0.6}, {"model": "tiny-kn3-wikitext", "weight": 0.4}]
    body = client.post("/v1/rescore", json={"models": models, "interpolation": "linear", "lm_weight": 2.0,
                                            "utterances": [utterance]}).json()
    assert body["interpolation"] == "linear"
    mixed = scores(client, models=models, interpolation="linear")["results"]
    for hypothesis, expected in zip(body["results"][0]["hypotheses"], mixed):
        lm = hypothesis["lm_logprobs"]
        assert set(lm) == {"tiny-word-lstm", "tiny-kn3-wikitext", "linear"}
        assert lm["linear"] == pytest.approx(expected["logprob"], abs=1e-4)
        assert hypothesis["score"] == pytest.approx(hypothesis["acoustic_score"] + 2.0 * lm["linear"], abs=1e-4)
    refused = client.post("/v1/rescore", json={"models": [models[0], {"model": "plain-kn3", "weight": 0.4}],
                                               "interpolation": "linear", "utterances": [utterance]})
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "models.1.model"
