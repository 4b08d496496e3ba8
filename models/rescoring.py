"""N-best rescoring: how a recogniser's hypotheses are ranked once language models have scored
them. Shared by the service (/v1/rescore) and the tuning CLI, so both rank alike.

    score = acoustic_weight * acoustic_score + sum_s score_weight_s * score_s
            + sum_m weight_m * lm_logprob_m + word_insertion_penalty * num_words

Before a model scores a hypothesis, the hypothesis is put in the form the model's training text
was in (`text_normalization` in its config.json's tokenizer section, `models.text_normalization`):
a model trained on lower-case text without punctuation meets "mister smith paid five dollars"
whether the recogniser wrote that or "Mr. Smith paid $5.".

All scores are natural logs. A hypothesis without an acoustic score counts it as 0 (rescoring
by the language models alone). Named scores (score_s: a second acoustic model, a CTC or
attention decoder's score, a duration model) carry their own weights. Any weight may be
negative: a language model weighted below 0 is subtracted, as density-ratio rescoring subtracts
the recogniser's source-domain language model. A score beyond the range of a float cannot be ranked, so a term
(or a sum) that overflows raises `ScoreOverflow` naming it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from models.artifacts import read_config
from models.text_normalization import NONE, NORMALIZATIONS, normalize_text


@dataclass(frozen=True)
class RescoringWeights:
    lm_weights: dict[str, float] = field(default_factory=dict)  # model id -> weight
    acoustic_weight: float = 1.0
    word_insertion_penalty: float = 0.0
    score_weights: dict[str, float] = field(default_factory=dict)  # named score -> weight


def count_words(text: str) -> int:
    """Words as a recogniser's output counts them: separated by white space."""
    return len(text.split())


class ScoreOverflow(ArithmeticError):
    """A weight times its score (or the sum of those terms) is not a finite float. `term` says
    which: "acoustic", "words", the model id of a language model's term, or with `named` the
    name of a named score (the largest term when only the sum overflows)."""

    def __init__(self, term: str, message: str, hypothesis: int | None = None, named: bool = False) -> None:
        super().__init__(message)
        self.term, self.hypothesis, self.named = term, hypothesis, named


def combined_score(acoustic_score: float | None, lm_logprobs: dict[str, float], num_words: int, weights: RescoringWeights,
                   named_scores: dict[str, float] | None = None) -> float:
    named_scores = named_scores or {}
    terms = [("acoustic", "acoustic_weight", weights.acoustic_weight, "acoustic_score", acoustic_score or 0.0, False)]
    terms += [(name, f"score_weights.{name}", weight, f"scores.{name}", named_scores[name], True)
              for name, weight in weights.score_weights.items()]
    terms += [(model, f"the weight of {model}", weight, "its log-probability", lm_logprobs[model], False)
              for model, weight in weights.lm_weights.items()]
    terms.append(("words", "word_insertion_penalty", weights.word_insertion_penalty, "num_words", num_words, False))
    products = []
    for term, weight_name, weight, score_name, score, named in terms:
        product = weight * score
        if not math.isfinite(product):
            raise ScoreOverflow(term, f"{weight_name} × {score_name} = {weight:g} × {score:g} overflows a float", named=named)
        products.append(product)
    # Grouped as acoustic + Σ named + Σ language models + words: without named scores the sum is
    # the one the tuning results were computed with, to the last bit.
    named_count = len(weights.score_weights)
    total = products[0] + sum(products[1 : 1 + named_count]) + sum(products[1 + named_count : -1]) + products[-1]
    if not math.isfinite(total):
        largest = max(range(len(terms)), key=lambda index: abs(products[index]))
        raise ScoreOverflow(terms[largest][0], f"the score's terms ({', '.join(f'{p:g}' for p in products)}) add up beyond "
                                               f"the range of a float", named=terms[largest][5])
    return total


def ranking(scores: list[float]) -> list[int]:
    """Indices best first (stable: the recogniser's order breaks ties)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def rescore_list(texts: list[str], acoustic_scores: list[float | None], lm_logprobs: list[dict[str, float]],
                 weights: RescoringWeights, named_scores: list[dict[str, float]] | None = None,
                 ) -> tuple[list[float], list[int], list[int]]:
    """One n-best list: (each hypothesis's score, its word count, the ranking best first)."""
    words = [count_words(text) for text in texts]
    named = named_scores or [{} for _ in texts]
    scores = []
    for index, (acoustic, lm, num_words, own) in enumerate(zip(acoustic_scores, lm_logprobs, words, named)):
        try:
            scores.append(combined_score(acoustic, lm, num_words, weights, own))
        except ScoreOverflow as error:
            raise ScoreOverflow(error.term, str(error), index, error.named) from None
    return scores, words, ranking(scores)


def recorded_normalization(tokenizer_section: dict) -> str:
    """The text normalisation a config.json's tokenizer section records ("none" when it records
    none, as models trained on text as written do)."""
    normalization = tokenizer_section.get("text_normalization") or NONE
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown text_normalization {normalization!r} (known: {', '.join(NORMALIZATIONS)})")
    return normalization


@lru_cache(maxsize=256)
def _directory_normalization(directory: Path, revision: str) -> str:
    return recorded_normalization(read_config(directory).get("tokenizer") or {})


def model_normalization(directory: str | Path, revision: str) -> str:
    """The text normalisation of the model in `directory` at `revision` (the config.json is read
    once per revision: a retrained model's is read again)."""
    return _directory_normalization(Path(directory), revision)


def in_model_form(texts: list[str | None], normalization: str) -> list[str | None]:
    """Hypotheses (or contexts, None for none) as the model's training text was written."""
    if normalization == NONE:
        return texts
    return [None if text is None else normalize_text(text, normalization) for text in texts]
