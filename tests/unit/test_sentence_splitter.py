"""A word model records the sentence splitter it was trained with, and serves only where that
splitter is available: without Punkt's data a Punkt-trained model fails to load (listed in
/readyz with the command that installs the data), never silently splitting request text
another way."""
import json
import shutil

import pytest

import models.tokenizers.words as words
from models.tokenizers import TokenizerConfig, make_tokenizer
from models.tokenizers.words import MissingSentenceSplitter
from training.corpus import lm_tokenizer_config


@pytest.fixture()
def without_punkt(monkeypatch):
    monkeypatch.setattr(words, "_punkt_available", lambda: False)


def test_training_records_the_splitter_in_use(monkeypatch):
    assert lm_tokenizer_config("word", "wikitext").sentence_splitter == "punkt"  # the suite runs with Punkt's data
    assert lm_tokenizer_config("char", "plain").sentence_splitter is None
    monkeypatch.setattr(words, "_punkt_available", lambda: False)
    assert lm_tokenizer_config("word", "wikitext").sentence_splitter == "regex"
    assert "sentence_splitter" in lm_tokenizer_config("word", "ptb").to_json()


def test_a_punkt_model_refuses_to_load_without_punkt(without_punkt):
    with pytest.raises(MissingSentenceSplitter, match="training.data fetch nltk_punkt"):
        make_tokenizer(TokenizerConfig(level="word", sentence_splitter="punkt"))
    # A model trained with the regular-expression splitter, or one that recorded none, loads.
    make_tokenizer(TokenizerConfig(level="word", sentence_splitter="regex"))
    make_tokenizer(TokenizerConfig(level="word"))


def test_the_shipped_word_model_records_punkt():
    from tests.conftest import SHIPPED_MODELS

    config = json.loads((SHIPPED_MODELS / "wikitext2-lstm" / "config.json").read_text())
    assert config["tokenizer"]["sentence_splitter"] == "punkt"


def test_readyz_lists_a_model_whose_splitter_is_missing(tmp_path, tiny_model_path, without_punkt):
    from tests.api.conftest import open_client

    models = tmp_path / "models"
    for name, splitter in (("punkt-model", "punkt"), ("regex-model", "regex")):
        shutil.copytree(tiny_model_path, models / name)
        config_path = models / name / "config.json"
        config = json.loads(config_path.read_text())
        config["tokenizer"]["sentence_splitter"] = splitter
        config_path.write_text(json.dumps(config))
    client = open_client(models, worker_mode="thread")
    try:
        ready = client.get("/readyz").json()
        assert "punkt-model" in ready["failed_models"] and "nltk_punkt" in ready["failed_models"]["punkt-model"]
        assert ready["models"] == ["regex-model"]
        assert client.post("/v1/score", json={"model": "punkt-model", "texts": ["the cat"]}).status_code == 404
    finally:
        client.__exit__(None, None, None)
