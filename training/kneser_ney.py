"""Interpolated modified Kneser-Ney estimation (Chen & Goodman 1998), vectorised with numpy.

    p(w | h) = (a(hw) - D_k(a(hw))) / a(h.) + gamma(h) * p(w | h')
    gamma(h) = (D_k1 N1(h.) + D_k2 N2(h.) + D_k3+ N3+(h.)) / a(h.)

where a() is the raw count at the highest order and, below it, the continuation count (the
number of distinct words seen before the n-gram), h' drops the oldest word of h, and the three
discounts of each order come from its count-of-counts:
Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
The unigram level is interpolated with the uniform distribution over the vocabulary, so every
word, seen or not, has a probability and each conditional distribution sums to one.

The training stream is read like the recurrent models read it (one ``<eos>`` per line) and the
model predicts the same tokens, so perplexities compare directly. The start of the stream
counts as one more distinct left context, so n-grams seen only there keep a count.
"""
from __future__ import annotations

import logging

import numpy as np

from models.ngram import NGramModel, NGramTable, hash_ngrams

logger = logging.getLogger(__name__)


def discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """D1, D2, D3+ from the count-of-counts; clamped into (0, r) when the data is too small for
    the closed form (a count-of-count of zero)."""
    n1, n2, n3, n4 = (int((counts == r).sum()) for r in (1, 2, 3, 4))
    fallback = (0.5, 1.0, 1.5)
    if min(n1, n2, n3) == 0:
        return fallback
    y = n1 / (n1 + 2 * n2)
    estimated = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(float(min(max(d, 0.05), r - 0.05)) if np.isfinite(d) else fallback[r - 1] for r, d in enumerate(estimated, start=1))


def _discount_of(counts: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    return np.select([counts == 0, counts == 1, counts == 2], [0.0, d[0], d[1]], default=d[2])


def _unique_ngrams(stream: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted keys, one id row per key (U, k), raw counts) of the k-grams of the stream."""
    length = len(stream) - k + 1
    columns = [stream[j : j + length] for j in range(k)]
    keys, first, counts = np.unique(hash_ngrams(columns), return_index=True, return_counts=True)
    rows = np.stack([column[first] for column in columns], axis=1)
    return keys, rows, counts


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    index = np.searchsorted(keys, wanted)
    if (index >= len(keys)).any() or not (keys[np.minimum(index, len(keys) - 1)] == wanted).all():
        raise AssertionError("a lower-order n-gram is missing; the hash tables are inconsistent")
    return index


def estimate(stream: np.ndarray, vocab_size: int, order: int, ngram_ids: list | None = None) -> tuple[NGramModel, dict]:
    """Estimate the model from an id stream. Returns the model and a summary (n-gram counts and
    discounts per order). A list passed as `ngram_ids` receives, per order, the n-grams' id rows
    in the order of that order's table (what an ARPA writer needs: the tables hold hashes)."""
    stream = np.asarray(stream, dtype=np.int64)
    if order < 1:
        raise ValueError("order must be at least 1")
    if len(stream) < order + 1:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for order {order}")
    levels = [_unique_ngrams(stream, k) for k in range(1, order + 1)]

    # Adjusted counts: raw at the highest order, continuation counts below it.
    adjusted: list[np.ndarray] = [None] * order  # type: ignore[list-item]
    adjusted[order - 1] = levels[order - 1][2].astype(np.int64)
    for k in range(order - 1, 0, -1):
        keys, _, _ = levels[k - 1]
        longer_rows = levels[k][1]
        suffix_keys, suffix_counts = np.unique(hash_ngrams([longer_rows[:, j] for j in range(1, k + 1)]), return_counts=True)
        counts = np.zeros(len(keys), dtype=np.int64)
        counts[_lookup(keys, suffix_keys)] = suffix_counts
        counts[_lookup(keys, hash_ngrams([stream[j : j + 1] for j in range(k)]))] += 1  # the stream's start
        adjusted[k - 1] = counts

    summary: dict = {"order": order, "ngrams": {}, "discounts": {}}
    tables: list[NGramTable] = []

    # Unigrams over the whole vocabulary, interpolated with the uniform distribution.
    unigram_counts = np.zeros(vocab_size, dtype=np.int64)
    unigram_rows = levels[0][1][:, 0]
    if unigram_rows.max() >= vocab_size:
        raise ValueError("stream holds ids outside the vocabulary")
    unigram_counts[unigram_rows] = adjusted[0]
    d = discounts(unigram_counts[unigram_counts > 0])
    total = unigram_counts.sum()
    gamma = _discount_of(unigram_counts, d).sum() / total
    probs = np.maximum(unigram_counts - _discount_of(unigram_counts, d), 0) / total + gamma / vocab_size
    all_ids = np.arange(vocab_size)
    unigram_keys = hash_ngrams([all_ids])
    sort = np.argsort(unigram_keys)
    tables.append(NGramTable(unigram_keys[sort], np.log(probs[sort]).astype(np.float32), np.zeros(vocab_size, dtype=np.float32)))
    if ngram_ids is not None:
        ngram_ids.append(all_ids[sort][:, None])
    lower_probs = probs[sort]  # linear probabilities aligned with the table, for interpolation
    summary["ngrams"]["1"] = int(vocab_size)
    summary["discounts"]["1"] = [round(x, 4) for x in d]

    for k in range(2, order + 1):
        keys, rows, _ = levels[k - 1]
        counts = adjusted[k - 1]
        d = discounts(counts)
        context_keys, context_of = np.unique(hash_ngrams([rows[:, j] for j in range(k - 1)]), return_inverse=True)
        totals = np.bincount(context_of, weights=counts)
        context_gamma = np.bincount(context_of, weights=_discount_of(counts, d)) / totals
        suffix_index = _lookup(tables[k - 2].keys, hash_ngrams([rows[:, j] for j in range(1, k)]))
        probs = (counts - _discount_of(counts, d)) / totals[context_of] + context_gamma[context_of] * lower_probs[suffix_index]
        # The interpolation weight of a context is its back-off weight one order down.
        tables[k - 2].backoff[_lookup(tables[k - 2].keys, context_keys)] = np.log(context_gamma)
        tables.append(NGramTable(keys, np.log(probs).astype(np.float32), np.zeros(len(keys), dtype=np.float32)))
        if ngram_ids is not None:
            ngram_ids.append(rows)
        lower_probs = probs
        summary["ngrams"][str(k)] = int(len(keys))
        summary["discounts"][str(k)] = [round(x, 4) for x in d]
        logger.info("order %d: %d n-grams, discounts %s", k, len(keys), summary["discounts"][str(k)])
    return NGramModel(tables, vocab_size), summary
