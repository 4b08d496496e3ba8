"""POST /v1/rescore: n-best lists reranked by language models combined log-linearly with the
acoustic scores, through /v1/score's batching, cached, with limits."""
import math
import shutil

import pytest

N_BEST = {"id": "u1", "hypotheses": [
    {"text": "mat the on sat cat the .", "acoustic_score": -10.0},
    {"text": "the cat sat on the mat .", "acoustic_score": -12.0},
    {"text": "the cat sat on the zebra .", "acoustic_score": -11.0},
]}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_model_path, tiny_ngram_path):
    directory = tmp_path_factory.mktemp("rescore-models")
    shutil.copytree(tiny_model_path, directory / tiny_model_path.name)
    shutil.copytree(tiny_ngram_path, directory / tiny_ngram_path.name)
    return directory


@pytest.fixture()
def client(make_client, models_dir):
    return make_client(models_dir=models_dir, max_rescore_utterances=4, max_rescore_hypotheses=5)


def test_language_model_scores_rerank_the_list(client):
    body = client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()
    assert body["models"] == [{"model": "tiny-word-lstm", "weight": 1.0}] and body["cached"] is False
    (result,) = body["results"]
    assert result["id"] == "u1" and result["best"] == 1 and result["ranking"][0] == 1
    texts = [h["text"] for h in N_BEST["hypotheses"]]
    scored = client.post("/v1/score", json={"texts": texts}).json()["results"]
    for hypothesis, score, sent in zip(result["hypotheses"], scored, N_BEST["hypotheses"]):
        assert hypothesis["lm_logprobs"] == {"tiny-word-lstm": score["logprob"]}  # the same numbers as /v1/score
        assert hypothesis["num_words"] == len(sent["text"].split())
        assert hypothesis["score"] == pytest.approx(sent["acoustic_score"] + score["logprob"], abs=1e-5)
    assert client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()["cached"] is True


def test_weights_penalty_and_several_models(client):
    body = {"models": [{"model": "tiny-word-lstm", "weight": 0.5}, {"model": "tiny-kn3", "weight": 0.25}],
            "acoustic_weight": 2.0, "word_insertion_penalty": 1.5, "utterances": [N_BEST]}
    (result,) = client.post("/v1/rescore", json=body).json()["results"]
    for hypothesis in result["hypotheses"]:
        lm = hypothesis["lm_logprobs"]
        expected = 2.0 * hypothesis["acoustic_score"] + 0.5 * lm["tiny-word-lstm"] + 0.25 * lm["tiny-kn3"] + 1.5 * hypothesis["num_words"]
        assert set(lm) == {"tiny-word-lstm", "tiny-kn3"} and hypothesis["score"] == pytest.approx(expected, abs=1e-5)
    assert result["ranking"] == sorted(range(3), key=lambda i: -result["hypotheses"][i]["score"])
    # A large acoustic weight hands the decision back to the recogniser.
    (acoustic,) = client.post("/v1/rescore", json={"acoustic_weight": 1000.0, "utterances": [N_BEST]}).json()["results"]
    assert acoustic["best"] == 0


def test_unknown_words_are_spelled_unless_asked_otherwise(client):
    spelled = client.post("/v1/rescore", json={"utterances": [N_BEST]}).json()["results"][0]["hypotheses"][2]
    unk = client.post("/v1/rescore", json={"unknown_words": "unk", "utterances": [N_BEST]}).json()["results"][0]["hypotheses"][2]
    assert spelled["lm_logprobs"]["tiny-word-lstm"] < unk["lm_logprobs"]["tiny-word-lstm"]


def test_language_model_only_and_context(client):
    plain = {"id": "u2", "hypotheses": [{"text": "sat on the mat ."}, {"text": "sat on the door ."}]}
    body = client.post("/v1/rescore", json={"utterances": [plain, {**plain, "id": "u3", "context": "the cat"}]}).json()
    without, with_context = body["results"]
    assert all(h["acoustic_score"] is None for h in without["hypotheses"])
    assert without["hypotheses"][0]["score"] == without["hypotheses"][0]["lm_logprobs"]["tiny-word-lstm"]
    # The context is read first, not scored: the same words get other probabilities after it.
    assert with_context["hypotheses"][0]["lm_logprobs"] != without["hypotheses"][0]["lm_logprobs"]
    assert all(math.isfinite(h["score"]) for h in with_context["hypotheses"])


@pytest.mark.parametrize("body, status, param", [
    ({"utterances": [N_BEST] * 5}, 422, "utterances"),
    ({"utterances": [{"id": "x", "hypotheses": [{"text": "a"}] * 6}]}, 422, "utterances.0.hypotheses"),
    ({"utterances": [{"id": "x", "hypotheses": [{"text": "a", "acoustic_score": -1}, {"text": "b"}]}]}, 422, "utterances.0.hypotheses"),
    ({"models": [{"model": "nope"}], "utterances": [N_BEST]}, 404, "models.0.model"),
    ({"models": [{"model": "tiny-kn3"}, {"model": "tiny-kn3"}], "utterances": [N_BEST]}, 422, "models"),
    ({"utterances": []}, 422, None),
    ({"utterances": [{"id": "x", "hypotheses": []}]}, 422, None),
    ({"utterances": [N_BEST], "acoustic_wieght": 1}, 422, None),
    ({"utterances": [{"id": "x", "hypotheses": [{"text": "a", "acoustic_score": "loud"}]}]}, 422, None),
])
def test_bad_requests(client, body, status, param):
    response = client.post("/v1/rescore", json=body)
    assert response.status_code == status, response.text
    if param:
        assert response.json()["error"]["param"] == param


def test_openapi_has_an_example(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/rescore" in schema["paths"]
    assert schema["components"]["schemas"]["RescoreRequest"]["examples"][0]["utterances"]
