"""Every exporter writes through `models.artifacts.staged_model_directory`: an export that fails
midway leaves no model directory and no hidden one beside it, so trying again just works, and a
model rewritten in place is either the old one or the new one."""
import json
import shutil

import pytest
import torch

from models.checkpoint import load_language_model
from models.spelling import SPELLING_FILE
from training import import_arpa, spelling, train_ngram, train_spelling
from training.average_checkpoints import main as average_checkpoints
from tests.training.test_arpa import SMALL_ARPA


def fail(*args, **kwargs):
    raise RuntimeError("killed midway")


def test_a_failed_arpa_import_leaves_nothing_and_the_next_try_succeeds(tmp_path, monkeypatch):
    path = tmp_path / "small.arpa"
    path.write_text(SMALL_ARPA)
    models = tmp_path / "models"
    with monkeypatch.context() as patch:
        patch.setattr(import_arpa, "attach_spelling", fail)  # after the n-gram tables are written
        with pytest.raises(RuntimeError, match="killed midway"):
            import_arpa.main([str(path), "--output", str(models / "small")])
    assert list(models.iterdir()) == []
    import_arpa.main([str(path), "--output", str(models / "small")])  # no --force needed
    assert sorted(p.name for p in (models / "small").iterdir()) == ["config.json", "model.safetensors", SPELLING_FILE, "vocab.json"]
    assert [p.name for p in models.iterdir()] == ["small"]


def test_a_failed_ngram_export_leaves_nothing(tiny_corpus, tmp_path, monkeypatch):
    output = tmp_path / "models" / "kn2"
    monkeypatch.setattr(train_ngram, "attach_spelling", fail)
    with pytest.raises(RuntimeError, match="killed midway"):
        train_ngram.main(["--data", str(tiny_corpus), "--order", "2", "--output", str(output)])
    assert list(output.parent.iterdir()) == []


def test_a_spelling_model_is_added_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "small.arpa"
    path.write_text(SMALL_ARPA)
    model = tmp_path / "models" / "small"
    import_arpa.main([str(path), "--output", str(model), "--spelling-order", "0"])
    config = (model / "config.json").read_text()
    with monkeypatch.context() as patch:
        patch.setattr(spelling, "write_config", fail)  # after the spelling model is written
        with pytest.raises(RuntimeError, match="killed midway"):
            train_spelling.main([str(model), "--order", "2"])
    assert not (model / SPELLING_FILE).exists() and (model / "config.json").read_text() == config
    assert [p.name for p in model.parent.iterdir()] == ["small"]
    info = train_spelling.main([str(model), "--order", "2"])
    assert (model / SPELLING_FILE).is_file() and json.loads((model / "config.json").read_text())["spelling"] == info
    assert [p.name for p in model.parent.iterdir()] == ["small"]


def test_an_average_written_over_its_own_export_keeps_the_spelling_model(tmp_path, tiny_model_path, tiny_corpus):
    export = tmp_path / "tiny-word-lstm"
    shutil.copytree(tiny_model_path, export)
    base = load_language_model(export)
    torch.save(base.model.state_dict(), tmp_path / "a.pt")
    result = average_checkpoints([str(export), str(tmp_path / "a.pt"), "--data", str(tiny_corpus), "--output", str(export), "--always"])
    assert result["written"]
    averaged = load_language_model(export)
    assert averaged.spelling is not None and averaged.config["spelling"] == base.config["spelling"]
    assert averaged.config["provenance"]["averaged_checkpoints"] == ["a.pt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
