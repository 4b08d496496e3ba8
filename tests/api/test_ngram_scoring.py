"""An n-gram model served next to a recurrent one: /v1/score takes it by name, /v1/models
lists it with its metrics, generation refuses it."""
from __future__ import annotations

import math
import shutil

import pytest

from training.evaluate_lm import main as evaluate


@pytest.fixture()
def lm_and_ngram(make_client, tmp_path, tiny_model_path, tiny_ngram_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_path, models / tiny_model_path.name)
    shutil.copytree(tiny_ngram_path, models / tiny_ngram_path.name)
    return make_client(models_dir=models)


def test_ngram_scores_and_ranks_an_n_best_list(lm_and_ngram):
    sentences = ["the cat sat on the mat .", "mat the on sat cat the .", "the cat sat on the zebra ."]
    body = lm_and_ngram.post("/v1/score", json={"model": "tiny-kn3", "texts": sentences, "unknown_words": "unk"}).json()
    assert body["model"] == "tiny-kn3"
    assert body["ranking"][0] == 0 and body["ranking"][-1] == 1
    good = body["results"][0]
    assert good["tokens"] == ["the", "cat", "sat", "on", "the", "mat", ".", "<eos>"]
    assert math.isclose(good["logprob"], sum(good["token_logprobs"]), abs_tol=1e-4)
    assert body["results"][2]["oov"][5] is True and body["results"][2]["num_unknown"] == 1
    # By default the unknown word also pays for its spelling (the n-gram has a spelling model).
    spelled = lm_and_ngram.post("/v1/score", json={"model": "tiny-kn3", "texts": sentences}).json()
    zebra_unk, zebra_spelled = body["results"][2], spelled["results"][2]
    assert zebra_spelled["unknown_words"] == "spell" and zebra_unk["unknown_words"] == "unk"
    assert zebra_spelled["token_logprobs"][5] < zebra_unk["token_logprobs"][5] - 1
    assert zebra_spelled["token_logprobs"][:5] == zebra_unk["token_logprobs"][:5]
    assert spelled["results"][0]["token_logprobs"] == good["token_logprobs"]  # no unknown word: the same
    # The default for /v1/score stays the recurrent model.
    assert lm_and_ngram.post("/v1/score", json={"texts": sentences}).json()["model"] == "tiny-word-lstm"


def test_ngram_is_listed_with_its_metrics(lm_and_ngram):
    listed = {m["id"]: m for m in lm_and_ngram.get("/v1/models").json()["data"]}
    ngram = listed["tiny-kn3"]
    assert ngram["type"] == "ngram"
    assert ngram["metrics"]["test_ppl"] > 1 and ngram["parameters"] > 0


def test_ngram_cannot_generate(lm_and_ngram):
    response = lm_and_ngram.post("/v1/generate", json={"model": "tiny-kn3", "prompt": "the cat"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "model"
    assert response.json()["error"]["message"] == "model 'tiny-kn3' is an n-gram model, which cannot generate; name a language model"


def test_evaluate_lm_gives_training_s_numbers_for_an_ngram(tiny_ngram_path, tiny_corpus):
    import json

    result = evaluate([str(tiny_ngram_path), "--data", str(tiny_corpus / "test.txt")])
    recorded = json.loads((tiny_ngram_path / "config.json").read_text())["metrics"]
    assert result["perplexity"] == pytest.approx(recorded["test_ppl"], rel=1e-4)
