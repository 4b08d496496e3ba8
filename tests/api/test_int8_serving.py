"""Serving in int8 (RNNSERVE_PRECISION, RNNSERVE_MODEL_PRECISION, config.json's serving_precision):
/v1/models shows each model's precision, the revision names it, and scores and rescoring are the
same for a text alone or among others."""
from __future__ import annotations

import json
import shutil

import pytest

from models.quantization import int8_available

pytestmark = pytest.mark.skipif(not int8_available(), reason="this PyTorch build has no fbgemm int8 kernels")

TEXTS = ["the cat sat on the mat .", "a bird ran to the door .", "my friend looked at a tree .", "the old man slept near the river ."]


def card(client, model_id: str) -> dict:
    return next(c for c in client.get("/v1/models").json()["data"] if c["id"] == model_id)


def test_models_show_their_precision_and_the_revision_names_it(make_client, client, tiny_ngram_path, tiny_models_dir, tmp_path):
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    shutil.copytree(tiny_ngram_path, models_dir / "tiny-kn3")
    fp32 = card(client, "tiny-word-lstm")
    assert fp32["precision"] == "fp32"
    int8 = make_client(models_dir=models_dir, precision="int8")
    quantized = card(int8, "tiny-word-lstm")
    assert quantized["precision"] == "int8" and quantized["revision"] != fp32["revision"]
    assert card(int8, "tiny-kn3")["precision"] == "fp32"  # an n-gram model has no int8 form
    per_model = make_client(models_dir=models_dir, model_precision={"tiny-word-lstm": "int8"})
    assert card(per_model, "tiny-word-lstm") == quantized


def test_config_json_chooses_the_precision_unless_the_setting_does(make_client, tiny_models_dir, tmp_path):
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    config_path = models_dir / "tiny-word-lstm" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "serving_precision": "int8"}))
    assert card(make_client(models_dir=models_dir), "tiny-word-lstm")["precision"] == "int8"
    assert card(make_client(models_dir=models_dir, precision="fp32"), "tiny-word-lstm")["precision"] == "fp32"


@pytest.fixture(scope="module")
def int8_client(tiny_models_dir):
    from tests.api.conftest import open_client

    client = open_client(tiny_models_dir, precision="int8")
    yield client
    client.__exit__(None, None, None)


def test_a_text_scores_the_same_alone_or_among_others(int8_client):
    together = int8_client.post("/v1/score", json={"texts": TEXTS}).json()["results"]
    for text, result in zip(TEXTS, together):
        alone = int8_client.post("/v1/score", json={"texts": [text]}).json()["results"][0]
        assert alone["token_logprobs"] == result["token_logprobs"]


def test_an_utterance_rescores_the_same_alone_or_among_others(int8_client):
    utterances = [{"id": f"u{i}", "hypotheses": [{"text": text}, {"text": TEXTS[(i + 1) % len(TEXTS)]}, {"text": text.replace("the", "a")}]}
                  for i, text in enumerate(TEXTS)]
    together = int8_client.post("/v1/rescore", json={"utterances": utterances})
    assert together.status_code == 200, together.text
    for utterance, result in zip(utterances, together.json()["results"]):
        alone = int8_client.post("/v1/rescore", json={"utterances": [utterance]}).json()["results"][0]
        assert alone["hypotheses"] == result["hypotheses"] and alone["ranking"] == result["ranking"]


def test_a_seeded_generation_is_the_same_in_any_company(int8_client):
    request = {"prompt": "the cat", "max_tokens": 8, "strategy": "multinomial", "seed": 5}
    alone = int8_client.post("/v1/generate", json=request).json()
    crowded = int8_client.post("/v1/generate", json={**request, "n": 3, "seed": 5}).json()
    assert alone["choices"][0]["text"] == crowded["choices"][0]["text"]
