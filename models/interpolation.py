"""Linear interpolation of language models per token (Mikolov et al. 2011: a recurrent model
mixed with an n-gram beats either alone):

    p(w | h) = Σ_m λ_m p_m(w | h),   Σ_m λ_m = 1

It needs the models to read text into the same tokens: the same level and tokenizer style, and
each later model's vocabulary covering the first's (a recurrent model and an n-gram trained on
the same corpus, or an imported ARPA file whose words include the recurrent model's). A word
unknown to a model counts there as its <unk> times the word's spelling probability, so every
component is a distribution over the same strings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tokenization:
    """What decides how a model splits text: level, style, and the words it knows."""

    level: str
    style: str
    words: frozenset[str]

    @classmethod
    def of(cls, loaded) -> "Tokenization":
        """Of a loaded language or n-gram model (anything with a vocabulary and a tokenizer)."""
        specials = set(loaded.vocab.specials.values())
        config = loaded.tokenizer.config
        return cls(config.level, config.style, frozenset(t for t in loaded.vocab.tokens if t not in specials))


def incompatibility(first: Tokenization, other: Tokenization) -> str | None:
    """Why `other` cannot be mixed per token with `first`, or None when it can."""
    if (first.level, first.style) != (other.level, other.style):
        return f"it reads text as {other.level}s in the {other.style!r} style, the first model as {first.level}s in the {first.style!r} style"
    missing = first.words - other.words
    if missing:
        examples = ", ".join(sorted(missing)[:3])
        return f"its vocabulary lacks {len(missing)} of the first model's words ({examples}, ...)"
    return None


def check_weights(weights: list[float], tolerance: float = 1e-6) -> None:
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError("interpolation weights must be finite and non-negative")
    if abs(sum(weights) - 1.0) > tolerance:
        raise ValueError(f"interpolation weights must sum to 1 (they sum to {sum(weights):g})")


def mix(token_logprobs: list[list[float]] | np.ndarray, weights: list[float]) -> np.ndarray:
    """log Σ_m λ_m exp(lp_m) per token; `token_logprobs` is (models, tokens) in natural log."""
    values = np.asarray(token_logprobs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(weights, dtype=np.float64))[:, None]
    return np.logaddexp.reduce(values + log_weights, axis=0)
