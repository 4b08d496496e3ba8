"""Language models stepped word by word for lattice rescoring (`models.lattice_rescoring`):
the expansion asks, for many (state, word) pairs at once, for log p(word | state) and the state
after the word, and for log p(end | state) at the lattice's end. `word_scorer` picks the scorer
of a model's type.

A recurrent model keeps its states as rows of a table on its device (a handle is a row number);
each request's pairs run as one batch (in chunks that bound the output layer's memory) through
the model's one-step path (`RNNLanguageModel.step_hidden`) and its target log-probabilities
(`logprobs_of`), the primitives prefix-tree scoring is built on. An n-gram model's state is its
last order-1 ids, and a request's pairs are one vectorised look-up (`NGramModel.window_logprobs`).

What a lattice word is, per tokenizer: for a level whose corpora come as whitespace-separated
tokens (word models) a lattice word is one token, as `/v1/score` reads pre-split `tokens`; an
unknown one costs log p(<unk> | context) plus its spelling (`unknown_words="spell"`), as in
`models.text_encoding`. Other levels (characters, pieces) read a word's text, after a space
unless it is the first word, so a path scores as its words joined by spaces would.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from models.scoring import LOGITS_BUDGET


class WordScorer(Protocol):
    """What the expansion needs of a language model. Handles are opaque to it."""

    def start(self) -> int:
        """The state every path starts from (after the model's start context)."""

    def advance(self, steps: list[tuple[int, str]]) -> list[tuple[float, int]]:
        """For each (state, word): log p(word | state) (natural log) and the state after it."""

    def finish(self, states: list[int]) -> list[float]:
        """log p(end of text | state) for each state."""


class WordReading:
    """How a model reads a lattice word: its ids, and what a spelling adds to an unknown one."""

    def __init__(self, loaded, unknown_words: str = "spell") -> None:
        self.loaded = loaded
        tokenizer = loaded.tokenizer
        self.words_are_tokens = tokenizer.reads_tokenized_corpora
        self.spell = unknown_words == "spell" and loaded.spelling is not None and tokenizer.spells_unknown_words
        self.end_id = loaded.vocab.id(tokenizer.config.end_token)
        self._known: dict[tuple[str, bool], tuple[list[int], float]] = {}

    def ids(self, word: str, first: bool) -> tuple[list[int], float]:
        """The ids `word` is read as (`first`: no word before it), and its spelling's log-probability
        when it is an unknown word that is spelled (else 0)."""
        key = (word, first or self.words_are_tokens)
        if key not in self._known:
            loaded = self.loaded
            if self.words_are_tokens:
                ids = [loaded.vocab.id(word)]
                extra = loaded.spelling.logprob(word) if self.spell and word not in loaded.vocab else 0.0
            else:
                ids, extra = loaded.vocab.encode(loaded.tokenizer.tokenize(word if first else " " + word)), 0.0
            self._known[key] = (ids, extra)
        return self._known[key]


class StateTable:
    """Recurrent states (each (num_layers, hidden) per tensor of the cell's state) and the
    top-layer output that predicts the next token, stored in chunks as they are made."""

    def __init__(self) -> None:
        self.chunks: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] = []  # (state (L, B, H) each, top (B, D))
        self.chunk_of: list[int] = []
        self.row_of: list[int] = []

    def __len__(self) -> int:
        return len(self.chunk_of)

    def add(self, state: tuple[torch.Tensor, ...], top: torch.Tensor) -> list[int]:
        chunk = len(self.chunks)
        self.chunks.append((state, top))
        first = len(self.chunk_of)
        self.chunk_of.extend([chunk] * top.size(0))
        self.row_of.extend(range(top.size(0)))
        return list(range(first, first + top.size(0)))

    def gather(self, handles: list[int]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(state (L, B, H) each, top (B, D)) of the handles, in their order."""
        by_chunk: dict[int, list[int]] = {}
        for position, handle in enumerate(handles):
            by_chunk.setdefault(self.chunk_of[handle], []).append(position)
        states, tops, order = [], [], []
        for chunk, positions in by_chunk.items():
            state, top = self.chunks[chunk]
            rows = torch.tensor([self.row_of[handles[p]] for p in positions], device=top.device)
            states.append(tuple(tensor.index_select(1, rows) for tensor in state))
            tops.append(top.index_select(0, rows))
            order.extend(positions)
        if len(by_chunk) == 1:
            state, top = states[0], tops[0]
        else:
            state = tuple(torch.cat(parts, dim=1) for parts in zip(*states))
            top = torch.cat(tops)
        if order != sorted(order):
            inverse = torch.empty(len(order), dtype=torch.long)
            inverse[torch.tensor(order)] = torch.arange(len(order))
            inverse = inverse.to(top.device)
            state = tuple(tensor.index_select(1, inverse) for tensor in state)
            top = top.index_select(0, inverse)
        return state, top


class RecurrentWordScorer:
    """`WordScorer` over a loaded recurrent language model (`models.checkpoint.LoadedLanguageModel`)."""

    def __init__(self, loaded, unknown_words: str = "spell") -> None:
        self.loaded, self.model = loaded, loaded.model
        self.device = self.model.embedding.weight.device
        self.reading = WordReading(loaded, unknown_words)
        self.table = StateTable()
        self.start_handle: int | None = None
        # Rows per network call: the linear head's (rows, vocabulary) table stays within the
        # scoring budget.
        self.max_rows = max(1, LOGITS_BUDGET // self.model.config.vocab_size)

    def start(self) -> int:
        if self.start_handle is None:
            ids = torch.tensor([self.loaded.start_ids()], device=self.device)
            with torch.inference_mode():
                outputs, state = self.model.hidden(ids)
            self.start_handle = self.table.add(state, outputs[:, -1])[0]
        return self.start_handle

    @torch.inference_mode()
    def advance(self, steps: list[tuple[int, str]]) -> list[tuple[float, int]]:
        results: list[tuple[float, int]] = []
        for begin in range(0, len(steps), self.max_rows):
            results += self._advance(steps[begin : begin + self.max_rows])
        return results

    def _advance(self, steps: list[tuple[int, str]]) -> list[tuple[float, int]]:
        words = [self.reading.ids(word, handle == self.start_handle) for handle, word in steps]
        state, top = self.table.gather([handle for handle, _ in steps])
        logprobs = torch.tensor([extra for _, extra in words], dtype=torch.float64)
        longest = max(len(ids) for ids, _ in words)
        for position in range(longest):
            active = [row for row, (ids, _) in enumerate(words) if len(ids) > position]
            tokens = torch.tensor([words[row][0][position] for row in active], device=self.device)
            if len(active) == len(words):
                logprobs += self.model.logprobs_of(top, tokens).double().cpu()
                top, state = self.model.step_hidden(tokens, state)
            else:
                rows = torch.tensor(active, device=self.device)
                logprobs[torch.tensor(active)] += self.model.logprobs_of(top[rows], tokens).double().cpu()
                stepped_top, stepped_state = self.model.step_hidden(tokens, tuple(t[:, rows] for t in state))
                top, state = top.clone(), tuple(t.clone() for t in state)
                top[rows] = stepped_top.to(top.dtype)
                for whole, part in zip(state, stepped_state):
                    whole[:, rows] = part.to(whole.dtype)
        handles = self.table.add(state, top)
        return list(zip(logprobs.tolist(), handles))

    @torch.inference_mode()
    def finish(self, states: list[int]) -> list[float]:
        values: list[float] = []
        for begin in range(0, len(states), self.max_rows):
            _, top = self.table.gather(states[begin : begin + self.max_rows])
            targets = torch.full((top.size(0),), self.reading.end_id, device=self.device)
            values += self.model.logprobs_of(top, targets).double().cpu().tolist()
        return values


class NGramWordScorer:
    """`WordScorer` over a loaded n-gram model (`models.ngram_checkpoint.LoadedNGramModel`)."""

    def __init__(self, loaded, unknown_words: str = "spell") -> None:
        self.model = loaded.model
        self.reading = WordReading(loaded, unknown_words)
        self.width = self.model.order - 1  # the ids a state keeps
        self.histories: list[tuple[int, ...]] = []
        self.handle_of: dict[tuple[int, ...], int] = {}
        self.start_handle = self._handle(tuple(loaded.start_ids()))

    def _handle(self, ids: tuple[int, ...]) -> int:
        history = ids[max(0, len(ids) - self.width):] if self.width else ()
        if history not in self.handle_of:
            self.handle_of[history] = len(self.histories)
            self.histories.append(history)
        return self.handle_of[history]

    def _logprobs(self, pairs: list[tuple[tuple[int, ...], int]]) -> np.ndarray:
        """log p(id | history) for each (history, id), as rows of right-aligned windows."""
        windows = np.full((len(pairs), self.model.order), -1, dtype=np.int64)
        for row, (history, target) in enumerate(pairs):
            if history:
                windows[row, self.model.order - 1 - len(history) : -1] = history
            windows[row, -1] = target
        return self.model.window_logprobs(windows)

    def start(self) -> int:
        return self.start_handle

    def advance(self, steps: list[tuple[int, str]]) -> list[tuple[float, int]]:
        words = [self.reading.ids(word, handle == self.start_handle) for handle, word in steps]
        histories = [self.histories[handle] for handle, _ in steps]
        totals = [extra for _, extra in words]
        for position in range(max((len(ids) for ids, _ in words), default=0)):
            active = [row for row, (ids, _) in enumerate(words) if len(ids) > position]
            values = self._logprobs([(histories[row], words[row][0][position]) for row in active])
            for row, value in zip(active, values.tolist()):
                totals[row] += value
                extended = histories[row] + (words[row][0][position],)
                histories[row] = extended[max(0, len(extended) - self.width):] if self.width else ()
        return [(total, self._handle(history)) for total, history in zip(totals, histories)]

    def finish(self, states: list[int]) -> list[float]:
        if not states:
            return []
        return self._logprobs([(self.histories[h], self.reading.end_id) for h in states]).tolist()


# Per model type (`models.registry`), the scorer that steps it through a lattice.
WORD_SCORERS = {"rnn_lm": RecurrentWordScorer, "ngram": NGramWordScorer}


def word_scorer(loaded, unknown_words: str = "spell") -> WordScorer:
    """The word scorer of a loaded language model of any type that scores text."""
    if loaded.model_type not in WORD_SCORERS:
        raise ValueError(f"models of type {loaded.model_type!r} cannot rescore lattices")
    return WORD_SCORERS[loaded.model_type](loaded, unknown_words)
