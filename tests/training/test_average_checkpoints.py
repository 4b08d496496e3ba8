"""training.average_checkpoints: the exported weights are the mean of the checkpoints."""
from __future__ import annotations

import pytest
import torch

from models.artifacts import CheckpointError
from models.checkpoint import load_language_model
from training.average_checkpoints import main as average_checkpoints


def test_average_is_the_elementwise_mean_and_is_evaluated(tmp_path, tiny_model_path, tiny_corpus):
    state = load_language_model(tiny_model_path).model.state_dict()
    other = load_language_model(tiny_model_path).model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in other.parameters():  # a tied tensor gets one perturbation, as in training
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    noisy = other.state_dict()
    torch.save(state, tmp_path / "a.pt")
    torch.save({"model": noisy, "train_state": {"step": 2}}, tmp_path / "b.pt")  # a resumable last.pt
    result = average_checkpoints([str(tiny_model_path), str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--data", str(tiny_corpus),
                                  "--output", str(tmp_path / "averaged"), "--always"])
    assert result["written"] and result["test_ppl"] > 1
    averaged = load_language_model(tmp_path / "averaged")
    for name, tensor in averaged.model.state_dict().items():
        expected = (state[name] + noisy[name]) / 2
        torch.testing.assert_close(tensor, expected, atol=1e-3, rtol=1e-3)
    assert averaged.config["provenance"]["averaged_checkpoints"] == ["a.pt", "b.pt"]
    assert averaged.metrics["valid_ppl"] == result["averaged_valid_ppl"]


def test_mismatched_checkpoints_are_refused(tmp_path, tiny_model_path, tiny_corpus):
    state = load_language_model(tiny_model_path).model.state_dict()
    torch.save(state, tmp_path / "a.pt")
    torch.save({name: tensor for name, tensor in list(state.items())[:-1]}, tmp_path / "short.pt")
    with pytest.raises(CheckpointError):
        average_checkpoints([str(tiny_model_path), str(tmp_path / "a.pt"), str(tmp_path / "short.pt"), "--data", str(tiny_corpus),
                             "--output", str(tmp_path / "out")])
