"""A token stream scored the standard way: read as one stream, one ``<eos>`` per line, the
hidden state carried across lines and across windows, the first token used as context only.
Training's validation, `training.evaluate_lm` and every loaded language model's `stream_loss`
call `stream_loss`, so they agree. The stream is cut the way training cuts it (`batchify`,
`windows`)."""
from __future__ import annotations

import numpy as np
import torch

from models.rnn_lm import RNNLanguageModel

EVAL_BATCH_SIZE = 1
EVAL_BPTT = 256


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) -> (batch_size, N // batch_size): each row a contiguous slice of the stream."""
    columns = ids.numel() // batch_size
    if columns < 2:
        raise ValueError(f"corpus of {ids.numel()} tokens is too small for batch size {batch_size}")
    return ids[: columns * batch_size].view(batch_size, columns)


def windows(batched: torch.Tensor, bptt: int, start: int = 0):
    """Yield (position, inputs (B, W), targets (B, W)) for truncated backpropagation."""
    for position in range(start, batched.size(1) - 1, bptt):
        width = min(bptt, batched.size(1) - 1 - position)
        yield position, batched[:, position : position + width], batched[:, position + 1 : position + 1 + width]


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
def stream_token_logprobs(model: RNNLanguageModel, ids: torch.Tensor, bptt: int = EVAL_BPTT,
                          device: torch.device | str = "cpu") -> np.ndarray:
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
