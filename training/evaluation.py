"""Perplexity the standard way: the split read as one stream, one ``<eos>`` per line, the
hidden state carried across lines (and across windows), the first token used as context only.
Training's validation and `training.evaluate_lm` both call `stream_loss`, so they agree."""
from __future__ import annotations

import math

import torch

from models.rnn_lm import RNNLanguageModel
from training.corpus import batchify, windows

EVAL_BATCH_SIZE = 1
EVAL_BPTT = 256


@torch.inference_mode()
def stream_loss(
    model: RNNLanguageModel,
    ids: torch.Tensor,
    batch_size: int = EVAL_BATCH_SIZE,
    bptt: int = EVAL_BPTT,
    device: torch.device | str = "cpu",
) -> float:
    """Mean negative log-likelihood in nats per predicted token."""
    was_training = model.training
    model.eval()
    data = batchify(ids, batch_size).to(device)
    state = model.init_state(batch_size, device)
    total, count = 0.0, 0
    for _, inputs, targets in windows(data, bptt):
        loss, state = model.loss(inputs, targets, state)
        total += float(loss) * targets.numel()
        count += targets.numel()
    model.train(was_training)
    return total / count


def loaded_model_stream_loss(loaded, ids: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE, bptt: int = EVAL_BPTT, device="cpu") -> float:
    """`stream_loss` for any loaded language model: an n-gram model predicts the same tokens
    (the first is context only) from its own history."""
    if loaded.model_type == "ngram":
        return loaded.model.stream_loss(ids.numpy())
    return stream_loss(loaded.model, ids, batch_size, bptt, device)


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")
