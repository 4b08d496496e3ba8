"""Perplexity from a stream's loss (`models.streams.stream_loss`, or a loaded model's own
`stream_loss`): per predicted unit, and per word for models whose units are not words."""
from __future__ import annotations

import math

import torch


@torch.inference_mode()
def word_perplexity(loss: float, tokens: int, words: int) -> float:
    """Perplexity per word of a stream of `tokens` units (pieces) that spell `words` words, from
    its loss per unit: the same total log-likelihood spread over the words (the first unit of a
    stream, like the first word, is context only)."""
    return round(math.exp(loss * (tokens - 1) / (words - 1)), 3)


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")
