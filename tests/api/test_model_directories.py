"""Several model directories (the user's next to the shipped ones), a default per type chosen
and explained, broken models skipped by the catalogue and the workers alike, and a reload that
serves new or retrained models without a restart."""
import json
import logging
import os
import shutil

import pytest

from models.checkpoint import load_language_model, save_language_model


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture()
def catalogue_log():
    """What the catalogue logs (the app replaces the root logger's handlers, so listen on its own)."""
    handler, logger = Recorded(), logging.getLogger("app.model_store")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def break_vocabulary(directory):
    """A model whose vocab.json lacks "tokens" (it once made every worker die at start-up)."""
    shutil.copytree(directory.parent / "tiny-word-lstm", directory)
    (directory / "vocab.json").write_text(json.dumps({"specials": {}}))


def test_several_directories_and_the_shipped_models(make_client, tiny_models_dir, tiny_ngram_path, catalogue_log):
    client = make_client(models_dir=f"{tiny_models_dir}{os.pathsep}{tiny_ngram_path.parent}", serve_shipped_models=True)
    cards = {card["id"]: card for card in client.get("/v1/models").json()["data"]}
    assert {"tiny-word-lstm", "tiny-kn3", "wikitext2-lstm", "shakespeare-char-lstm", "flickr8k-captioner"} <= set(cards)
    # The configured default stays the default when the user's models join it, and the log says why.
    assert cards["wikitext2-lstm"]["default"] and not cards["tiny-word-lstm"]["default"]
    assert "default language model: wikitext2-lstm (named by RNNSERVE_DEFAULT_LANGUAGE_MODEL)" in catalogue_log.text
    assert client.post("/v1/score", json={"model": "tiny-kn3", "texts": ["the cat sat"]}).status_code == 200
    assert client.post("/v1/generate", json={"model": "tiny-word-lstm", "prompt": "the", "max_tokens": 2}).status_code == 200


def test_without_the_named_default_the_log_says_which_and_why(make_client, catalogue_log):
    client = make_client(default_language_model="absent-model")
    assert client.get("/v1/models").json()["data"][0]["default"] is True
    assert "RNNSERVE_DEFAULT_LANGUAGE_MODEL=absent-model is not loaded" in catalogue_log.text


def test_a_broken_model_is_skipped_and_the_others_serve(make_client, copy_of_models):
    break_vocabulary(copy_of_models / "broken")
    client = make_client(models_dir=copy_of_models, startup_timeout_s=60)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["models"] == ["tiny-word-lstm"] and "'tokens'" in ready.json()["failed_models"]["broken"]
    assert all(not worker["failed_models"] for worker in ready.json()["workers"])  # workers never saw it
    response = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 3, "strategy": "argmax"})
    assert response.status_code == 200


def test_reload_adds_updates_and_removes_models(make_client, copy_of_models):
    client = make_client(models_dir=copy_of_models)
    shutil.copytree(copy_of_models / "tiny-word-lstm", copy_of_models / "tiny-copy")
    body = client.post("/v1/models/reload").json()
    assert body["added"] == ["tiny-copy"] and body["updated"] == [] and body["removed"] == []
    first = client.post("/v1/generate", json={"model": "tiny-copy", "prompt": "the cat", "max_tokens": 5, "strategy": "argmax"})
    assert first.status_code == 200
    # Retrained in place: a new revision is served (and not answered from the cache).
    loaded = load_language_model(copy_of_models / "tiny-copy")
    with __import__("torch").no_grad():
        for parameter in loaded.model.parameters():
            parameter.mul_(0.5)
    save_language_model(copy_of_models / "tiny-copy", loaded.model, loaded.vocab, loaded.tokenizer.config, {"model_id": "tiny-copy"})
    body = client.post("/v1/models/reload").json()
    assert body["updated"] == ["tiny-copy"]
    revision = next(card["revision"] for card in body["data"] if card["id"] == "tiny-copy")
    assert revision != next(card["revision"] for card in client.get("/v1/models").json()["data"] if card["id"] == "tiny-word-lstm")
    second = client.post("/v1/generate", json={"model": "tiny-copy", "prompt": "the cat", "max_tokens": 5, "strategy": "argmax"})
    assert second.status_code == 200 and second.json()["cached"] is False
    # A broken directory appearing later is reported; removing a model stops serving it.
    break_vocabulary(copy_of_models / "broken")
    shutil.rmtree(copy_of_models / "tiny-copy")
    body = client.post("/v1/models/reload").json()
    assert body["removed"] == ["tiny-copy"] and "broken" in body["failed"]
    assert client.post("/v1/generate", json={"model": "tiny-copy", "prompt": "the"}).status_code == 404
    assert "broken" in client.get("/readyz").json()["failed_models"]


def test_reload_needs_a_key_when_keys_are_set(make_client):
    client = make_client(api_keys="secret")
    assert client.post("/v1/models/reload").status_code == 401
    assert client.post("/v1/models/reload", headers={"Authorization": "Bearer secret"}).status_code == 200


def test_the_catalogue_reads_files_and_builds_no_network(monkeypatch, tiny_models_dir, tiny_ngram_path):
    """The HTTP process describes models from config.json and vocab.json; only the workers
    build networks."""
    from app.model_store import ModelStore
    from models.rnn_lm import RNNLanguageModel

    def refuse(*args, **kwargs):
        raise AssertionError("the catalogue built a network")

    monkeypatch.setattr(RNNLanguageModel, "__init__", refuse)
    store = ModelStore.discover([tiny_models_dir, tiny_ngram_path.parent], {"language_model": None})
    assert not store.failures
    word, ngram = store.models["tiny-word-lstm"], store.models[tiny_ngram_path.name]
    assert word.tasks == {"generate", "score"} and ngram.tasks == {"score"}
    assert word.level == "word" and word.parameters > 0 and "valid_ppl" in word.metrics


def test_weights_that_do_not_fit_leave_the_catalogue_when_the_workers_fail_on_them(make_client, copy_of_models):
    """A directory whose files look right but whose weights do not match its architecture: the
    workers cannot load it, so it is dropped and reported, and the others serve."""
    import json
    import shutil

    shutil.copytree(copy_of_models / "tiny-word-lstm", copy_of_models / "broken")
    config_path = copy_of_models / "broken" / "config.json"
    config = json.loads(config_path.read_text())
    config["architecture"]["hidden_dim"] += 8
    config_path.write_text(json.dumps(config))
    client = make_client(models_dir=copy_of_models, startup_timeout_s=60)
    ready = client.get("/readyz").json()
    assert ready["models"] == ["tiny-word-lstm"] and "do not match" in ready["failed_models"]["broken"]
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny-word-lstm"]
    response = client.post("/v1/generate", json={"model": "broken", "prompt": "the cat", "max_tokens": 3})
    assert response.status_code == 404


def test_a_model_that_cannot_do_the_task_is_named_with_what_can(make_client, tiny_models_dir, tiny_ngram_path):
    client = make_client(models_dir=tiny_ngram_path.parent)
    response = client.post("/v1/generate", json={"model": tiny_ngram_path.name, "prompt": "the cat"})
    assert response.status_code == 422
    assert "cannot generate" in response.text


def test_the_log_names_only_settings_that_exist(catalogue_log):
    """An n-gram model is the default of its type (in /v1/models) but no setting chooses it;
    the log names the real settings and no RNNSERVE_DEFAULT_NGRAM."""
    from types import SimpleNamespace

    from app.model_store import ModelStore

    store = ModelStore(models={"kn3": SimpleNamespace(public_type="ngram"), "lstm": SimpleNamespace(public_type="language_model")})
    store.choose_defaults({"language_model": None, "captioner": None})
    assert store.defaults == {"ngram": "kn3", "language_model": "lstm"}
    assert "default n-gram model: kn3 (the first n-gram model by id; no setting chooses it)" in catalogue_log.text
    assert "default language model: lstm (the first language model by id (RNNSERVE_DEFAULT_LANGUAGE_MODEL is not set))" in catalogue_log.text
    assert "RNNSERVE_DEFAULT_NGRAM" not in catalogue_log.text
