import json
import struct

import pytest
import torch

from models.artifacts import CheckpointError
from models.checkpoint import load_language_model, save_language_model
from models.registry import load_model
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.tokenizers import TokenizerConfig
from models.vocab import Vocabulary


def make(tie: bool = True) -> tuple[RNNLanguageModel, Vocabulary]:
    vocab = Vocabulary.build(["a", "b", "c", "d"])
    torch.manual_seed(0)
    config = LanguageModelConfig(vocab_size=len(vocab), embedding_dim=8, hidden_dim=12, num_layers=2, tie_weights=tie, dropout=0.0)
    return RNNLanguageModel(config).eval(), vocab


def read_safetensors_header(path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length])


def test_round_trip_with_tied_weights(tmp_path):
    model, vocab = make(tie=True)
    directory = save_language_model(tmp_path / "m", model, vocab, TokenizerConfig(), {"metrics": {"valid_ppl": 1.5}})
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    header = read_safetensors_header(directory / "model.safetensors")
    assert "decoder.weight" not in header  # the tied copy is not stored twice
    loaded = load_language_model(directory)
    assert loaded.model.decoder.weight is loaded.model.embedding.weight
    tokens = torch.randint(0, len(vocab), (2, 5))
    torch.testing.assert_close(loaded.model(tokens)[0], model(tokens)[0])
    assert loaded.metrics == {"valid_ppl": 1.5}
    assert len(loaded.revision) == 64
    assert load_model(directory).model_id == "m"


def test_float16_storage_loads_as_float32(tmp_path):
    model, vocab = make(tie=False)
    directory = save_language_model(tmp_path / "m", model, vocab, TokenizerConfig(), weights_dtype="float16")
    header = read_safetensors_header(directory / "model.safetensors")
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    loaded = load_language_model(directory)
    assert loaded.model.embedding.weight.dtype == torch.float32
    tokens = torch.randint(0, len(vocab), (2, 5))
    torch.testing.assert_close(loaded.model(tokens)[0], model(tokens)[0], atol=2e-3, rtol=1e-2)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model, vocab = make()
    directory = save_language_model(tmp_path / "m", model, vocab, TokenizerConfig())

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must not be used to load a serving checkpoint")

    monkeypatch.setattr(torch, "load", forbidden)
    load_language_model(directory)


def test_mismatched_weights_and_bad_configs_are_rejected(tmp_path):
    model, vocab = make()
    directory = save_language_model(tmp_path / "m", model, vocab, TokenizerConfig())
    config = json.loads((directory / "config.json").read_text())
    config["architecture"]["hidden_dim"] = 16
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises((CheckpointError, RuntimeError)):
        load_language_model(directory)
    config["format_version"] = 99
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError):
        load_language_model(directory)
    with pytest.raises(CheckpointError):
        load_language_model(tmp_path / "missing")
