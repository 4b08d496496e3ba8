"""Recurrent states after token sequences a worker has already read, so that a prompt seen
before starts where reading stopped instead of at its first token.

This pays where prompts repeat or grow: the same prompt sampled again (retries, several
choices, a playground's "again"), and a conversation whose next prompt is the last prompt, its
answer and a new turn, which then reads only the new turn. A transformer server must keep a
key/value block per token to do this; an RNN's whole past is its state, a few kilobytes
whatever the prompt's length, so one entry per sequence is all it takes.

Entries are looked up by the longest cached prefix of a prompt. Each prefix length has a
chained hash (hash of the previous prefix's hash and the next id), so a lookup hashes the
prompt once, and the stored ids are compared before an entry is used (a hash collision is a
miss, never a wrong state). Entries are evicted least recently used beyond a byte budget.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

import torch

ID_BYTES = 8  # what one stored prompt id costs, counted against the budget with the tensors


@dataclass(frozen=True)
class CachedState:
    """The state after reading `ids`: the recurrent state ((layers, 1, H) tensors) and the top
    layer's output for the last id (1, D), from which the next token is chosen."""

    ids: tuple[int, ...]
    state: tuple[torch.Tensor, ...]
    hidden: torch.Tensor

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        tensors = (*self.state, self.hidden)
        return sum(t.numel() * t.element_size() for t in tensors) + ID_BYTES * len(self.ids)


def prefix_keys(ids: list[int] | tuple[int, ...]) -> list[int]:
    """keys[n - 1] identifies ids[:n]."""
    keys, key = [], 0
    for token_id in ids:
        key = hash((key, token_id))
        keys.append(key)
    return keys


class PromptStateCache:
    """States of one model's token sequences, bounded by `max_bytes` (0: keeps nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[int, CachedState] = OrderedDict()
        self.lengths: Counter[int] = Counter()  # how many entries of each length: the only lengths worth looking up
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def longest_prefix(self, ids: list[int]) -> CachedState | None:
        """The entry for the longest prefix of `ids` (all of it included) that is cached."""
        if not self.entries:
            return None
        keys = prefix_keys(ids)
        # Whichever is fewer: the prompt's prefix lengths, or the lengths cached.
        lengths = range(len(ids), 0, -1) if len(ids) <= len(self.lengths) else sorted(self.lengths, reverse=True)
        for length in lengths:
            if length > len(ids) or length not in self.lengths:
                continue
            key = keys[length - 1]
            entry = self.entries.get(key)
            if entry is not None and entry.ids == tuple(ids[:length]):
                self.entries.move_to_end(key)
                return entry
        return None

    def put(self, ids: list[int], state: tuple[torch.Tensor, ...], hidden: torch.Tensor) -> None:
        """Keep the state after `ids`; the tensors are copied, so that an entry never holds on
        to (or shares memory with) the running batch it was sliced from."""
        if not ids or self.max_bytes <= 0:
            return
        entry = CachedState(tuple(ids), tuple(s.clone() for s in state), hidden.clone())
        if entry.nbytes > self.max_bytes:
            return
        key = prefix_keys(ids)[-1]
        self._remove(key)
        self.entries[key] = entry
        self.lengths[entry.length] += 1
        self.bytes += entry.nbytes
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self.entries)))

    def _remove(self, key: int) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry.nbytes
        self.lengths[entry.length] -= 1
        if not self.lengths[entry.length]:
            del self.lengths[entry.length]
