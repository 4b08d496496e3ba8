"""Sentence scoring with the model's unmodified distribution, in natural-log units.

For a sequence [start, w1, ..., wn] the model predicts w1..wn; each predicted token gets
log p(w_i | start, w1..w_{i-1}) (natural log). The start token itself is context, not counted.
Perplexity is exp(-total / n) over the counted tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from models.rnn_lm import RNNLanguageModel


@dataclass
class SequenceScore:
    token_logprobs: list[float]
    logprob: float
    num_tokens: int
    perplexity: float
    # Per scored token, when asked for: the likeliest tokens at its position, best first, as
    # (token id, log-probability) pairs from the same distribution as `token_logprobs`.
    top_logprobs: list[list[tuple[int, float]]] | None = None


def summarise(token_logprobs: list[float]) -> SequenceScore:
    total = math.fsum(token_logprobs)
    count = len(token_logprobs)
    perplexity = math.exp(-total / count) if count else float("nan")
    return SequenceScore(token_logprobs, total, count, perplexity)


# Upper bound on logits held at once (floats), so long inputs or large vocabularies are scored
# in windows instead of one (B, T, V) tensor.
LOGITS_BUDGET = 1 << 24


@torch.inference_mode()
def score_sequences(model: RNNLanguageModel, sequences: list[list[int]], top_logprobs: int = 0) -> list[SequenceScore]:
    """Score each id sequence (its first id is context only). Sequences are run together,
    right-padded: a recurrent model's outputs at a position never depend on later padding.
    With `top_logprobs`, each scored position also gives that many likeliest tokens, read from
    the same distribution in the same pass."""
    if any(len(s) < 2 for s in sequences):
        raise ValueError("each sequence needs a context token and at least one token to score")
    device = model.embedding.weight.device
    longest = max(len(s) for s in sequences)
    padded = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = torch.tensor(sequence)
    padded = padded.to(device)
    if model.adaptive is not None and not top_logprobs:
        return _score_with_adaptive_head(model, padded, sequences)
    window = max(1, LOGITS_BUDGET // (len(sequences) * model.config.vocab_size))
    top_count = min(top_logprobs, model.config.vocab_size)
    picked_windows, top_values, top_ids = [], [], []
    state = None
    for start in range(0, longest - 1, window):
        inputs = padded[:, start : min(start + window, longest - 1)]
        targets = padded[:, start + 1 : start + 1 + inputs.size(1)]
        logits, state = model(inputs, state)  # (B, W, V)
        logprobs = logits.float().log_softmax(dim=-1)
        picked_windows.append(logprobs.gather(2, targets.unsqueeze(2)).squeeze(2).cpu())
        if top_count:
            values, ids = logprobs.topk(top_count, dim=-1)  # (B, W, K)
            top_values.append(values.cpu())
            top_ids.append(ids.cpu())
    picked = torch.cat(picked_windows, dim=1)  # (B, T-1)
    scores = [summarise(picked[row, : len(s) - 1].tolist()) for row, s in enumerate(sequences)]
    if top_count:
        values, ids = torch.cat(top_values, dim=1).tolist(), torch.cat(top_ids, dim=1).tolist()  # (B, T-1, K)
        for row, (score, sequence) in enumerate(zip(scores, sequences)):
            score.top_logprobs = [list(zip(ids[row][position], values[row][position])) for position in range(len(sequence) - 1)]
    return scores


def _score_with_adaptive_head(model: RNNLanguageModel, padded: torch.Tensor, sequences: list[list[int]]) -> list[SequenceScore]:
    """An adaptive softmax gives log p(target) under its full normalised distribution from the
    head and the target's own cluster alone, so scoring skips the (B, T, V) table that sampling
    needs: same numbers, several times faster for a large vocabulary."""
    hidden, _ = model.hidden(padded[:, :-1])
    targets = padded[:, 1:]
    picked = model.adaptive(hidden.reshape(-1, hidden.size(-1)).float(), targets.reshape(-1)).output
    picked = picked.view(targets.shape).cpu()
    return [summarise(picked[row, : len(s) - 1].tolist()) for row, s in enumerate(sequences)]


def rank(scores) -> list[int]:
    """Indices of scored items (anything with a total `logprob`) by total log-probability,
    best first (stable for ties)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i].logprob)
