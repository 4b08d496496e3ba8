"""Perplexity the standard way: the split read as one stream, one ``<eos>`` per line, the
hidden state carried across lines (and across windows), the first token used as context only.
Training's validation and `training.evaluate_lm` both call `stream_loss`, so they agree."""
from __future__ import annotations

import math

import numpy as np
import torch

from models.rnn_lm import RNNLanguageModel
from training.corpus import batchify, windows

EVAL_BATCH_SIZE = 1
EVAL_BPTT = 256


@torch.inference_mode()
def word_perplexity(loss: float, tokens: int, words: int) -> float:
    """Perplexity per word of a stream of `tokens` units (pieces) that spell `words` words, from
    its loss per unit: the same total log-likelihood spread over the words (the first unit of a
    stream, like the first word, is context only)."""
    return round(math.exp(loss * (tokens - 1) / (words - 1)), 3)


@torch.no_grad()
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


@torch.inference_mode()
def stream_token_logprobs(model: RNNLanguageModel, ids: torch.Tensor, bptt: int = EVAL_BPTT, device: torch.device | str = "cpu") -> np.ndarray:
    """log p of every token after the first (natural log), the stream read as `stream_loss`
    reads it with batch size 1: what per-token interpolation mixes."""
    was_training = model.training
    model.eval()
    data = batchify(ids, 1).to(device)
    state = model.init_state(1, device)
    parts = []
    for _, inputs, targets in windows(data, bptt):
        picked, state = model.target_logprobs(inputs, targets, state)
        parts.append(picked.reshape(-1).double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(parts)


def loaded_model_token_logprobs(loaded, ids: torch.Tensor, bptt: int = EVAL_BPTT, device="cpu") -> np.ndarray:
    """`stream_token_logprobs` for any loaded language model (an n-gram's from its own history)."""
    if loaded.model_type == "ngram":
        return loaded.model.token_logprobs(ids.numpy(), context=1)
    return stream_token_logprobs(loaded.model, ids, bptt, device)


def loaded_model_stream_loss(loaded, ids: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE, bptt: int = EVAL_BPTT, device="cpu") -> float:
    """`stream_loss` for any loaded language model: an n-gram model predicts the same tokens
    (the first is context only) from its own history."""
    if loaded.model_type == "ngram":
        return loaded.model.stream_loss(ids.numpy())
    return stream_loss(loaded.model, ids, batch_size, bptt, device)


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")
