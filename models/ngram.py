"""A back-off n-gram language model (the servable form of an interpolated Kneser-Ney model).

For each order k the model holds the stored k-grams as sorted 64-bit hashes of their ids, each
with log p(w | h) (natural log, already interpolated with the lower orders) and, below the
highest order, the back-off weight of that k-gram used as a context. A query backs off the
standard way (ARPA / KenLM semantics):

    log p(w | h) = log p_k(h_k w) + sum over the longer contexts h_j (j >= k) of bow(h_j)

where k is the longest stored n-gram ending in w. For an interpolated model the back-off
weight of a context is exactly its interpolation weight, so this equals the interpolated
probability. Hashing is what KenLM's probing structure does too: with a few million n-grams
the chance of any collision among 64-bit hashes is below 1e-6.

Stored as safetensors (no pickle): ``keys.K`` (uint64) and ``logprob.K`` (float32) for
K = 1..order, ``backoff.K`` (float32) below the highest order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Odd 64-bit multiplier (from SplitMix64) for the polynomial hash of an id sequence; numpy's
# uint64 arithmetic wraps modulo 2**64, which is what a hash wants.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_OFFSET = np.uint64(0x632BE59BD9B4E019)


def hash_ngrams(columns: list[np.ndarray]) -> np.ndarray:
    """Hash of each row of k id columns (oldest first): one uint64 per n-gram."""
    with np.errstate(over="ignore"):
        key = np.full(len(columns[0]), _OFFSET, dtype=np.uint64)
        for column in columns:
            key = key * _MULTIPLIER + column.astype(np.uint64) + np.uint64(1)
            key ^= key >> np.uint64(29)
    return key


@dataclass
class NGramTable:
    """The stored n-grams of one order, sorted by key."""

    keys: np.ndarray  # uint64, sorted
    logprob: np.ndarray  # float32, natural log
    backoff: np.ndarray  # float32, natural log (zeros at the highest order)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, index) of each key."""
        index = np.searchsorted(self.keys, keys)
        index = np.minimum(index, max(len(self.keys) - 1, 0))
        found = self.keys[index] == keys if len(self.keys) else np.zeros(len(keys), dtype=bool)
        return found, index


class NGramModel:
    """Back-off n-gram model over ids 0..vocab_size-1; every id has a unigram entry."""

    def __init__(self, tables: list[NGramTable], vocab_size: int) -> None:
        if not tables:
            raise ValueError("an n-gram model needs at least the unigram table")
        self.tables = tables
        self.vocab_size = vocab_size
        self.order = len(tables)
        unigram_ids = np.arange(vocab_size)
        found, self._unigram_index = tables[0].find(hash_ngrams([unigram_ids]))
        if not found.all():
            raise ValueError("the unigram table must hold every vocabulary id")

    @property
    def num_ngrams(self) -> int:
        return sum(len(table.keys) for table in self.tables)

    def token_logprobs(self, ids: np.ndarray, context: int = 1) -> np.ndarray:
        """log p(ids[i] | ids[:i]) for i >= context (natural log), as one vectorised pass per
        order. The first `context` ids are history only."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) <= context:
            return np.zeros(0, dtype=np.float64)
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError("id outside the vocabulary")
        # Each position's window: up to order-1 ids before it (-1 where the sequence starts).
        padded = np.concatenate([np.full(self.order - 1, -1, dtype=np.int64), ids])
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.order)[context:]
        return self.window_logprobs(windows)

    def window_logprobs(self, windows: np.ndarray) -> np.ndarray:
        """log p(last id | the ids before it) for each row of `windows` (N, order): the history
        is right-aligned, -1 where a row has less of it (a sequence's start). A token's
        probability depends on nothing else, so a batch of sequences is scored as its distinct
        windows (`score_sequences`): an n-best list's shared prefixes are looked up once."""
        windows = np.asarray(windows, dtype=np.int64)
        targets = windows[:, -1]
        # Walk up the orders: where the k-gram is stored, its probability replaces the shorter
        # one and the back-off weights collected so far are dropped (they belong to contexts
        # no longer than the matched one); where it is not, the context's back-off weight is added.
        history = (windows[:, :-1] >= 0).sum(axis=1)  # right-aligned: the known ids before the target
        result = self.tables[0].logprob[self._unigram_index[targets]].astype(np.float64)
        pending_backoff = np.zeros(len(windows), dtype=np.float64)
        width = windows.shape[1]
        for k in range(2, self.order + 1):
            usable = np.flatnonzero(history >= k - 1)
            if not len(usable):
                break
            rows = windows[usable]
            context_keys = hash_ngrams([rows[:, width - k + j] for j in range(k - 1)])
            context_found, context_index = self.tables[k - 2].find(context_keys)
            ngram_keys = hash_ngrams([rows[:, width - k + j] for j in range(k)])
            ngram_found, ngram_index = self.tables[k - 1].find(ngram_keys)
            bow = np.where(context_found, self.tables[k - 2].backoff[context_index], 0.0)
            prob = self.tables[k - 1].logprob[ngram_index]
            matched = usable[ngram_found]
            result[matched] = prob[ngram_found]
            pending_backoff[matched] = 0.0
            unmatched = usable[~ngram_found]
            pending_backoff[unmatched] += bow[~ngram_found]
        return result + pending_backoff

    def score_sequences(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """`token_logprobs(s, context=1)` for every sequence, computed once per distinct window."""
        windows = []
        for sequence in sequences:
            padded = [-1] * (self.order - 1) + list(sequence)
            windows.extend(padded[i : i + self.order] for i in range(1, len(sequence)))
        if not windows:
            return [np.zeros(0) for _ in sequences]
        array = np.asarray(windows, dtype=np.int64)
        if array.max() >= self.vocab_size or (array[:, -1] < 0).any():
            raise ValueError("id outside the vocabulary")
        distinct, inverse = np.unique(array, axis=0, return_inverse=True)
        values = self.window_logprobs(distinct)[inverse.reshape(-1)]
        results, position = [], 0
        for sequence in sequences:
            results.append(values[position : position + len(sequence) - 1])
            position += len(sequence) - 1
        return results

    def stream_loss(self, ids: np.ndarray) -> float:
        """Mean negative log-likelihood (nats) of a stream, its first token context only: the
        tokens a recurrent model's stream evaluation counts."""
        return float(-self.token_logprobs(ids, context=1).mean())

    def logprob_table(self, history: list[int]) -> np.ndarray:
        """log p(w | history) for every id w (for checks: it sums to one)."""
        vocab = np.arange(self.vocab_size)
        rows = np.concatenate([np.tile(np.asarray(history, dtype=np.int64), (self.vocab_size, 1)), vocab[:, None]], axis=1)
        return np.array([self.token_logprobs(row, context=len(history))[0] for row in rows])

    def to_tensors(self) -> dict[str, np.ndarray]:
        tensors = {}
        for k, table in enumerate(self.tables, start=1):
            tensors[f"keys.{k}"] = table.keys
            tensors[f"logprob.{k}"] = table.logprob
            if k < self.order:  # the highest order is never a context: no back-off weights
                tensors[f"backoff.{k}"] = table.backoff
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], order: int, vocab_size: int) -> "NGramModel":
        tables = []
        for k in range(1, order + 1):
            keys, logprob = tensors[f"keys.{k}"], tensors[f"logprob.{k}"]
            backoff = tensors[f"backoff.{k}"] if k < order else np.zeros(len(keys), dtype=np.float32)
            if keys.dtype != np.uint64 or not (len(keys) == len(logprob) == len(backoff)):
                raise ValueError(f"order {k}: keys, logprob and backoff disagree")
            if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
                raise ValueError(f"order {k}: keys are not sorted and unique")
            tables.append(NGramTable(keys, logprob.astype(np.float32), backoff.astype(np.float32)))
        return cls(tables, vocab_size)
