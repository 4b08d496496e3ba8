"""How good an n-best decision's word confidences are, against reference transcripts.

- A chosen word is correct when the word edit distance alignment to the reference
  (models.confidence.align) pairs it with an equal reference word.
- Normalised cross entropy (NCE, as NIST's sclite reports it): 1 − H(confidences)/H(base), where
  H(confidences) is the cross entropy of the correct/incorrect labels under the confidences and
  H(base) the one under the constant confidence p = the share of correct words. 1 is perfect, 0
  is no better than that constant, below 0 worse. Confidences are clipped to [CLIP, 1 − CLIP] so
  a confidently wrong word costs −log CLIP nats rather than infinitely many.
- WER when only the words with a confidence at or above a threshold are kept (the rest become
  deletions), with the share of words kept: what filtering on confidence trades.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jiwer

from models.confidence import align

CLIP = 1e-6


def correct_words(hypothesis: Sequence[str], reference: Sequence[str]) -> list[bool]:
    correct = [False] * len(hypothesis)
    for i, j in align(reference, hypothesis):
        if i is not None and j is not None and reference[i] == hypothesis[j]:
            correct[j] = True
    return correct


def normalised_cross_entropy(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """None when every word is correct, or none is (the base entropy is 0)."""
    count, right = len(correct), sum(correct)
    if right in (0, count):
        return None
    share = right / count
    base = -(right * math.log(share) + (count - right) * math.log(1 - share))
    clipped = [min(max(c, CLIP), 1 - CLIP) for c in confidences]
    own = -math.fsum(math.log(c) if ok else math.log(1 - c) for c, ok in zip(clipped, correct))
    return (base - own) / base


def filtered_wer(references: Sequence[str], chosen: Sequence[Sequence[str]], confidences: Sequence[Sequence[float]],
                 threshold: float) -> tuple[float, float]:
    """(WER, share of words kept) when each utterance keeps the words with confidence ≥ threshold."""
    kept = [[w for w, c in zip(words, conf) if c >= threshold] for words, conf in zip(chosen, confidences)]
    total = sum(len(words) for words in chosen)
    share = sum(len(words) for words in kept) / total if total else 1.0
    return jiwer.wer(list(references), [" ".join(words) for words in kept]), share
