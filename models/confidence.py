"""What an n-best list says beyond its best hypothesis: each hypothesis's posterior, a confidence
per word of the chosen one, and the minimum-Bayes-risk decision.

- Posteriors: a softmax over the list of score × posterior_scale (the list stands in for every
  word sequence the recogniser could have output).
- Word confidences: each hypothesis is aligned to the chosen one by word edit distance; a word's
  confidence is the posterior mass of the hypotheses that carry the same word at its position
  (the n-best approximation of a confusion network; the chosen hypothesis counts its own).
- MBR (Goel & Byrne 2000, restricted to the list): the hypothesis whose expected word errors
  against the list, weighted by the posteriors, are fewest.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Words = Sequence[str]
# Pairs of word sequences whose edit distances are computed at once (bounds the memory of a
# chunk to about pairs × longest sequence × 8 bytes per array).
PAIRS_PER_CHUNK = 16384
# Posterior mass that expected_errors may leave out of its sums (see there).
EVIDENCE_TAIL = 1e-9


def posteriors(scores: Sequence[float], scale: float = 1.0) -> list[float]:
    """softmax(scale · score) over the list, for finite scores of any magnitude and a finite scale > 0.

    Differences are taken as halves (score/2 − best/2), which stay finite for every pair of
    finite floats; a difference too large for a float gives its hypothesis a posterior of 0."""
    if not scores:
        return []
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"the posterior scale must be finite and above 0, not {scale!r}")
    best = max(scores)
    exponents = [scale * (score / 2 - best / 2) * 2 for score in scores]  # each ≤ 0 (or −inf)
    weights = [math.exp(e) for e in exponents]
    total = math.fsum(weights)  # ≥ 1: the best hypothesis weighs exp(0)
    return [w / total for w in weights]


def align(reference: Words, hypothesis: Words) -> list[tuple[int | None, int | None]]:
    """A minimum word edit distance alignment: (reference index, hypothesis index) pairs in order,
    None on the side of an insertion or deletion. Of equally short alignments it takes a match or
    substitution before a deletion, and a deletion before an insertion, so it is deterministic."""
    rows, columns = len(reference), len(hypothesis)
    cost = [[0] * (columns + 1) for _ in range(rows + 1)]
    for i in range(rows + 1):
        cost[i][0] = i
    for j in range(columns + 1):
        cost[0][j] = j
    for i in range(1, rows + 1):
        above, here = cost[i - 1], cost[i]
        word = reference[i - 1]
        for j in range(1, columns + 1):
            here[j] = min(above[j - 1] + (word != hypothesis[j - 1]), above[j] + 1, here[j - 1] + 1)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = rows, columns
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            i, j = i - 1, j - 1
            pairs.append((i, j))
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
            pairs.append((i, None))
        else:
            j -= 1
            pairs.append((None, j))
    pairs.reverse()
    return pairs


def agreeing_hypotheses(chosen: int, word_lists: Sequence[Words]) -> list[list[int]]:
    """For each word of the chosen hypothesis, the hypotheses that carry the same word where they
    align to it (the chosen one included). It does not depend on the posteriors, so a tuner can
    compute it once and try many posterior scales."""
    reference = word_lists[chosen]
    agreeing: list[list[int]] = [[] for _ in reference]
    for index, words in enumerate(word_lists):
        if index == chosen:
            for position in range(len(reference)):
                agreeing[position].append(index)
            continue
        for position, other in align(reference, words):
            if position is not None and other is not None and reference[position] == words[other]:
                agreeing[position].append(index)
    return agreeing


def confidences_from(agreeing: Sequence[Sequence[int]], posterior: Sequence[float]) -> list[float]:
    """Each word's confidence: the posterior mass of the hypotheses agreeing with it, within [0, 1]."""
    return [min(1.0, math.fsum(posterior[index] for index in indices)) for indices in agreeing]


def word_confidences(chosen: int, word_lists: Sequence[Words], posterior: Sequence[float]) -> list[float]:
    return confidences_from(agreeing_hypotheses(chosen, word_lists), posterior)


def pairwise_distances(word_lists: Sequence[Words]) -> np.ndarray:
    """The word edit distance between every two word sequences (a symmetric integer matrix)."""
    count = len(word_lists)
    distances = np.zeros((count, count), dtype=np.int64)
    first, second = np.triu_indices(count, k=1)
    found = distances_between(word_lists, first, second)
    distances[first, second] = found
    distances[second, first] = found
    return distances


def distances_between(word_lists: Sequence[Words], first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The word edit distance of each pair (word_lists[first[k]], word_lists[second[k]]).

    The dynamic programme runs for many pairs at once, row by row: within a row an insertion
    carries the cost on from the left, d[b] = min(t[b], d[b−1] + 1), which is a running minimum
    b + min_{k≤b}(t[k] − k), so a row is a few array operations."""
    if len(first) == 0:
        return np.zeros(0, dtype=np.int64)
    vocabulary: dict[str, int] = {}
    encoded = [[vocabulary.setdefault(word, len(vocabulary) + 1) for word in words] for words in word_lists]
    lengths = np.array([len(words) for words in encoded], dtype=np.int32)
    longest = int(lengths.max())
    tokens = np.zeros((len(encoded), max(longest, 1)), dtype=np.int32)  # 0 pads; a padded cell is never read
    for index, words in enumerate(encoded):
        tokens[index, : len(words)] = words
    found = np.empty(len(first), dtype=np.int64)
    for start in range(0, len(first), PAIRS_PER_CHUNK):
        a, b = first[start : start + PAIRS_PER_CHUNK], second[start : start + PAIRS_PER_CHUNK]
        found[start : start + len(a)] = _distances(tokens[a], lengths[a], tokens[b], lengths[b], longest)
    return found


def _distances(left: np.ndarray, left_lengths: np.ndarray, right: np.ndarray, right_lengths: np.ndarray,
               longest: int) -> np.ndarray:
    pairs = len(left)
    columns = np.arange(longest + 1, dtype=np.int32)
    row = np.broadcast_to(columns, (pairs, longest + 1)).copy()  # row 0: j insertions
    through = np.empty_like(row)
    found = np.empty(pairs, dtype=np.int64)
    everyone = np.arange(pairs)
    done = left_lengths == 0
    found[done] = row[done, right_lengths[done]]
    for i in range(1, int(left_lengths.max()) + 1):
        through[:, 0] = i
        np.minimum(row[:, 1:] + 1, row[:, :-1] + (left[:, i - 1 : i] != right[:, :longest]), out=through[:, 1:])
        through -= columns
        np.minimum.accumulate(through, axis=1, out=row)
        row += columns
        ending = left_lengths == i
        found[ending] = row[everyone[ending], right_lengths[ending]]
    return found


def expected_errors(word_lists: Sequence[Words], posterior: Sequence[float]) -> list[float]:
    """Per hypothesis, Σ_j posterior_j · edit_distance(hypothesis, hypothesis_j) in words.

    Equal word sequences are computed once, with their posteriors added. The least probable
    sequences whose posteriors add up to less than EVIDENCE_TAIL are left out of the sum (each
    hypothesis's expected errors then err by less than EVIDENCE_TAIL × its longest distance), so
    a peaked list costs little however long it is."""
    unique: dict[tuple[str, ...], int] = {}
    which = [unique.setdefault(tuple(words), len(unique)) for words in word_lists]
    mass = np.zeros(len(unique))
    for index, probability in zip(which, posterior):
        mass[index] += probability
    by_mass = np.argsort(-mass, kind="stable")
    tail = np.cumsum(mass[by_mass][::-1])[::-1]  # tail[k]: the mass of by_mass[k:]
    evidence = by_mass[: max(1, int(np.count_nonzero(tail >= EVIDENCE_TAIL)))]
    is_evidence = np.zeros(len(unique), dtype=bool)
    is_evidence[evidence] = True
    candidates, weighed = np.meshgrid(np.arange(len(unique)), evidence, indexing="ij")
    candidates, weighed = candidates.ravel(), weighed.ravel()
    # A pair of two evidence sequences is computed once, for both directions.
    keep = (candidates != weighed) & ~(is_evidence[candidates] & (candidates > weighed))
    candidates, weighed = candidates[keep], weighed[keep]
    found = distances_between(list(unique), candidates, weighed)
    expected = np.zeros(len(unique))
    np.add.at(expected, candidates, found * mass[weighed])
    both = is_evidence[candidates]
    np.add.at(expected, weighed[both], found[both] * mass[candidates[both]])
    return [float(expected[index]) for index in which]


def mbr_choice(expected: Sequence[float], ranking: Sequence[int]) -> int:
    """The hypothesis with the fewest expected errors; of equals, the one ranked first by score."""
    return min(ranking, key=lambda index: expected[index])


@dataclass(frozen=True)
class Decision:
    """One list's posteriors, its chosen hypothesis, and that hypothesis's word confidences."""
    posteriors: list[float]
    best: int
    confidences: list[float]
    expected_errors: list[float] | None  # decision "mbr" only


def decide(texts: Sequence[str], scores: Sequence[float], ranking: Sequence[int], posterior_scale: float = 1.0,
           decision: str = "map") -> Decision:
    """MAP takes the first of the ranking; MBR the fewest expected errors. Words are the texts split at white space."""
    word_lists = [text.split() for text in texts]
    posterior = posteriors(scores, posterior_scale)
    expected = expected_errors(word_lists, posterior) if decision == "mbr" else None
    best = mbr_choice(expected, ranking) if expected is not None else ranking[0]
    return Decision(posterior, best, word_confidences(best, word_lists, posterior), expected)
