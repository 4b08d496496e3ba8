"""Batched autoregressive generation on top of the model's explicit state.

`prefill` runs prompts of different lengths in one packed call; `decode_step` advances every
live row by one token. A `GenerationBatch` holds the live rows (state, next-token scores,
sampler: rows are the batch dimension of each) with `filter` and `concatenate` for rows that
leave and join. Every step goes through `models.decode_loop`: the `generate` loop below, and the
serving engine's continuous batcher, with rows joining and leaving between steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from models.decode_loop import step_rows
from models.next_token import NextTokenScores
from models.rnn_lm import RNNLanguageModel, State
from models.sampling import BatchSampler, SamplingParams
from models.tokenizers import CONTEXT_TOKENS, QUOTE, Tokenizer, context_window, current_line
from models.vocab import Vocabulary


@torch.inference_mode()
def prefill(model: RNNLanguageModel, prompts: list[list[int]], state: State | None = None) -> tuple[NextTokenScores, State]:
    """Run whole prompts (from `state`, one column per prompt, or the initial state); returns
    each row's next-token scores and state."""
    device = model.embedding.weight.device
    lengths = torch.tensor([len(p) for p in prompts])
    if int(lengths.min()) < 1:
        raise ValueError("every prompt needs at least one token")
    padded = torch.zeros((len(prompts), int(lengths.max())), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        padded[row, : len(prompt)] = torch.tensor(prompt)
    padded = padded.to(device)
    hidden, state = model.hidden(padded, state, lengths=lengths if len(set(lengths.tolist())) > 1 else None)
    last = hidden[torch.arange(len(prompts), device=device), (lengths - 1).to(device)]  # (B, D)
    return NextTokenScores(model, last), state


@torch.inference_mode()
def decode_step(model: RNNLanguageModel, tokens: torch.Tensor, state: State) -> tuple[NextTokenScores, State]:
    """tokens (B,) -> next-token scores and the new state. The output layer runs when the
    sampler reads it (for an adaptive head, often only its head)."""
    hidden, state = model.step_hidden(tokens, state)
    return NextTokenScores(model, hidden), state


@dataclass
class GenerationBatch:
    """The live rows of a generation: their recurrent state (a tuple of (layers, B, H) tensors),
    next-token scores and sampler, row i of each belonging to the same sequence."""

    model: RNNLanguageModel
    state: State
    scores: NextTokenScores
    sampler: BatchSampler

    @classmethod
    def prefilled(cls, model: RNNLanguageModel, prompts: list[list[int]], sampler: BatchSampler,
                  state: State | None = None) -> "GenerationBatch":
        """Rows that start after their whole prompts (run in one packed call, from `state` or
        the initial state)."""
        scores, state = prefill(model, prompts, state)
        return cls(model, state, scores, sampler)

    @classmethod
    def resumed(cls, model: RNNLanguageModel, state: State, hidden: torch.Tensor, sampler: BatchSampler) -> "GenerationBatch":
        """Rows that start from states saved earlier: `hidden` (B, D) is each row's top-layer
        output after its last token read."""
        return cls(model, state, NextTokenScores(model, hidden), sampler)

    @classmethod
    def feeding_prompts(cls, model: RNNLanguageModel, state: State, sampler: BatchSampler,
                        width: int) -> "GenerationBatch":
        """Rows at `state` (the initial state, or one saved after part of their prompts) whose
        prompts are still to be fed through decode steps: their first scores are read by no one."""
        hidden = torch.zeros(state[0].size(1), width, device=state[0].device)
        return cls(model, state, NextTokenScores(model, hidden), sampler)

    def row_state(self, row: int) -> tuple[State, torch.Tensor]:
        """Row `row`'s recurrent state ((layers, 1, H) each) and top-layer output (1, D): views
        into the batch."""
        return tuple(s[:, row : row + 1] for s in self.state), self.scores.hidden[row : row + 1]

    def __len__(self) -> int:
        return self.scores.hidden.size(0)

    @property
    def device(self) -> torch.device:
        return self.scores.hidden.device

    def logprobs(self) -> torch.Tensor:
        """Every row's next-token log-probabilities (B, V): the whole output layer."""
        return self.scores.logits.float().log_softmax(dim=-1)

    def choose(self, generated: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """One token per row from its next-token scores (rows not `active` choose nothing)."""
        return self.sampler.choose(self.scores, generated, active)

    def advance(self, tokens: torch.Tensor) -> None:
        """Feed one token per row: the state and the scores move one step."""
        self.scores, self.state = decode_step(self.model, tokens, self.state)

    def filter(self, keep: list[int]) -> "GenerationBatch":
        """The rows `keep`, in that order (rows leave)."""
        index = torch.tensor(keep, device=self.scores.hidden.device)
        return GenerationBatch(self.model, tuple(s[:, index] for s in self.state), self.scores.filter(index),
                               self.sampler.filter(keep))

    def concatenate(self, other: "GenerationBatch") -> "GenerationBatch":
        """These rows followed by `other`'s (rows join)."""
        return GenerationBatch(self.model, tuple(torch.cat([a, b], dim=1) for a, b in zip(self.state, other.state)),
                               self.scores.concatenate(other.scores), self.sampler.concatenate(other.sampler))


@dataclass
class Completion:
    """One row's result. `token_ids` are every token chosen, all of which the row's recurrent
    state has read (the prompt cache and the token counts rely on that); `tokens` are the tokens
    of `text`. They differ only when a stop string ends the completion: OpenAI's completions
    API returns the text without the stop string ("The returned text will not contain the stop
    sequence"), and `tokens` keep just the tokens whose own text begins before it. A token that
    begins before the stop string and runs into it is kept (its text is cut with the rest), so
    `text` holds the text of exactly the reported tokens and the separators between them, and
    each reported token's text offset lies inside `text`."""

    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None


# Tracked text: tokens that stay live (re-detokenized with each new token, so that a later token
# can still change how they join) and how many are frozen into text at a time.
LIVE_TOKENS = 16
FROZEN_STEP = 16
MIN_WINDOW_TOKENS = 4  # context tokens the live ones are joined to, at least


class CompletionTracker:
    """Accumulates one row's tokens and decides when it is finished.

    Detokenizing is not free for word models, so the text is tracked as it grows only when
    someone needs it (streaming, or stop strings to look for); otherwise it is made once, when
    the row finishes. Tracked text costs the same for every token however long the completion:
    all but the last LIVE_TOKENS tokens are frozen into text, and each new token detokenizes
    only the live tokens after a bounded context (what `detokenize_continuation` reads of a
    context anyway); detokenizing the whole completion at every token would cost time
    quadratic in its length.
    """

    def __init__(self, params: SamplingParams, vocab: Vocabulary, tokenizer: Tokenizer, incremental_text: bool = True,
                 context: list[str] | tuple[str, ...] = ()) -> None:
        self.params, self.vocab, self.tokenizer = params, vocab, tokenizer
        # The prompt's tokens: the text is what the tokens add after it, separator included.
        self.context = list(context)
        self.incremental_text = incremental_text or bool(params.stop)
        self.completion = Completion()
        self.frozen_text, self.frozen_count = "", 0
        # The context line's last tokens and the quotes before them, frozen tokens included:
        # the window the live tokens join (see models.tokenizers.base.context_window).
        line = current_line(self.context)
        self.line_tail, self.dropped_quotes = line[-CONTEXT_TOKENS:], line[:-CONTEXT_TOKENS].count(QUOTE)
        self._window: tuple[list[str], str] | None = None
        self.last_offset = 0  # where the last token's own text starts in the completion's text
        self.token_offsets: list[int] = []  # the same for every token (tracked text only)

    @property
    def finished(self) -> bool:
        return self.completion.finish_reason is not None

    def take(self, token_id: int) -> int | None:
        """Record a token; returns it as the row's next input, or None when it finished the row."""
        self.add(token_id)
        return None if self.finished else token_id

    def add(self, token_id: int) -> str:
        """Record a token; returns the text it adds (empty when text is not tracked). A stop
        string cuts the text before it, the text returned included, and drops the tokens that
        begin at or after it (see `Completion`)."""
        completion = self.completion
        if token_id == self.vocab.eos_id:
            completion.finish_reason = "stop"
            self._final_text()
            return ""
        completion.token_ids.append(token_id)
        completion.tokens.append(self.vocab.tokens[token_id])
        if len(completion.token_ids) >= self.params.max_tokens:
            completion.finish_reason = "length"
        if not self.incremental_text:
            self._final_text()
            return ""
        previous_text, settled = completion.text, len(self.frozen_text)
        text = self._tracked_text()
        common = _common_prefix(previous_text, text, min(settled, len(text)))
        # Detokenizing can rewrite the tail (joining "n" + "'t"), so the token's text is looked
        # for in the new suffix (after the separator it may begin with); the frozen text is a
        # prefix of both.
        delta = text[common:]
        surface = self.tokenizer.surface(completion.tokens[-1])
        found = delta.find(surface) if surface else -1
        self.last_offset = common + (found if found >= 0 else len(delta) - len(delta.lstrip()))
        self.token_offsets.append(self.last_offset)
        # Only text after what was already searched can hold a new occurrence; the earliest one
        # ends the completion.
        found_stops = [position for stop in self.params.stop
                       if (position := text.find(stop, max(0, settled - len(stop)))) >= 0]
        if found_stops:
            cut = min(found_stops)
            text = text[:cut]
            completion.finish_reason = "stop"
            kept = next((index for index, offset in enumerate(self.token_offsets) if offset >= cut), len(self.token_offsets))
            del completion.tokens[kept:]
        completion.text = text
        return text[_common_prefix(previous_text, text, min(settled, len(text))):]

    def _tracked_text(self) -> str:
        tokens = self.completion.tokens
        if len(tokens) - self.frozen_count > FROZEN_STEP + LIVE_TOKENS:
            # Freeze up to a plain boundary: the word detokenizer joins clitics, punctuation runs
            # ("." "." "." -> "...") and numbers across a boundary, but two words always meet
            # with one space, so the frozen text is final there.
            for boundary in range(len(tokens) - LIVE_TOKENS, self.frozen_count, -1):
                if self.tokenizer.plain_boundary(tokens[boundary - 1], tokens[boundary]):
                    self._freeze(tokens[self.frozen_count : boundary])
                    break
        window, before = self._join_window()
        return self.frozen_text + self.tokenizer.join_continuation(window, tokens[self.frozen_count :], before)

    def _join_window(self) -> tuple[list[str], str]:
        """The window the live tokens join, and its own text, made once per freeze. It starts
        at the last boundary between two plain words that leaves MIN_WINDOW_TOKENS (what is
        before such a boundary meets what follows with one space, quotes aside, and the quotes
        are carried by context_window), so each token detokenizes a few words, not 64."""
        if self._window is None:
            tail, cut = self.line_tail, 0
            for boundary in range(len(tail) - MIN_WINDOW_TOKENS, 0, -1):
                if self.tokenizer.plain_boundary(tail[boundary - 1], tail[boundary]):
                    cut = boundary
                    break
            window = context_window(tail[cut:], self.dropped_quotes + tail[:cut].count(QUOTE))
            self._window = (window, self.tokenizer.detokenize(window) if window else "")
        return self._window

    def _freeze(self, piece: list[str]) -> None:
        window, before = self._join_window()
        self.frozen_text += self.tokenizer.join_continuation(window, piece, before)
        self.frozen_count += len(piece)
        line = self.line_tail + piece
        self.dropped_quotes += line[:-CONTEXT_TOKENS].count(QUOTE)
        self.line_tail = line[-CONTEXT_TOKENS:]
        self._window = None

    def _final_text(self) -> None:
        if self.finished and not self.incremental_text:
            self.completion.text = self.tokenizer.detokenize_continuation(self.context, self.completion.tokens)


def _common_prefix(first: str, second: str, start: int = 0) -> int:
    """Length of the common prefix of two strings known to agree on their first `start` characters."""
    limit = min(len(first), len(second))
    while start < limit and first[start] == second[start]:
        start += 1
    return start


def generate(
    model: RNNLanguageModel,
    vocab: Vocabulary,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    params: list[SamplingParams],
) -> list[Completion]:
    """Generate a completion for each prompt (token ids, start token included)."""
    trackers = [CompletionTracker(p, vocab, tokenizer, incremental_text=False, context=vocab.decode(prompt))
                for p, prompt in zip(params, prompts)]
    for tracker in trackers:
        if tracker.params.max_tokens == 0:
            tracker.completion.finish_reason = "length"
    live = [row for row, tracker in enumerate(trackers) if not tracker.finished]
    if not live:
        return [t.completion for t in trackers]
    device = model.embedding.weight.device
    sampler = BatchSampler([params[r] for r in live], len(vocab), vocab.unk_id, vocab.eos_id, device)
    batch: GenerationBatch | None = GenerationBatch.prefilled(model, [prompts[r] for r in live], sampler)
    while batch is not None:
        batch, keep = step_rows(batch, [len(trackers[row].completion.token_ids) for row in live],
                                lambda index, token, _: trackers[live[index]].take(token))
        live = [live[index] for index in keep]
    return [t.completion for t in trackers]
