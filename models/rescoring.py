"""N-best rescoring: how a recogniser's hypotheses are ranked once language models have scored
them. Shared by the service (/v1/rescore) and the tuning CLI, so both rank alike.

    score = acoustic_weight * acoustic_score + sum_m weight_m * lm_logprob_m + word_insertion_penalty * num_words

All scores are natural logs. A hypothesis without an acoustic score counts it as 0 (rescoring
by the language models alone).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RescoringWeights:
    lm_weights: dict[str, float] = field(default_factory=dict)  # model id -> weight
    acoustic_weight: float = 1.0
    word_insertion_penalty: float = 0.0


def count_words(text: str) -> int:
    """Words as a recogniser's output counts them: separated by white space."""
    return len(text.split())


def combined_score(acoustic_score: float | None, lm_logprobs: dict[str, float], num_words: int, weights: RescoringWeights) -> float:
    lm = sum(weight * lm_logprobs[model] for model, weight in weights.lm_weights.items())
    return weights.acoustic_weight * (acoustic_score or 0.0) + lm + weights.word_insertion_penalty * num_words


def ranking(scores: list[float]) -> list[int]:
    """Indices best first (stable: the recogniser's order breaks ties)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def rescore_list(texts: list[str], acoustic_scores: list[float | None], lm_logprobs: list[dict[str, float]],
                 weights: RescoringWeights) -> tuple[list[float], list[int], list[int]]:
    """One n-best list: (each hypothesis's score, its word count, the ranking best first)."""
    words = [count_words(text) for text in texts]
    scores = [combined_score(a, lm, n, weights) for a, lm, n in zip(acoustic_scores, lm_logprobs, words)]
    return scores, words, ranking(scores)
