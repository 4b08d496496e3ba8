"""One decode step over a batch of rows: choose a token for every row, hand each row its token,
drop the rows that finished and advance the rest. Offline generation (`models.generation`),
caption sampling (`models.captioning.decoding`) and the serving engine's continuous batcher
all step through these functions; they differ only in what a row does with its token (the
`take` callback) and, for the batcher, in rows joining between steps.

A batch is anything with the `DecodeBatch` shape: `models.generation.GenerationBatch` for
language models and `models.captioning.decoding.CaptionBatch` for the captioner's decoder.
"""
from __future__ import annotations

from typing import Callable, Protocol, TypeVar

import torch


class DecodeBatch(Protocol):
    device: torch.device

    def __len__(self) -> int: ...

    def choose(self, generated: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """One token per row from its next-token scores (rows not `active` choose nothing)."""

    def logprobs(self) -> torch.Tensor:
        """Every row's next-token log-probabilities (B, V), natural log."""

    def advance(self, tokens: torch.Tensor) -> None:
        """Feed one token per row."""

    def filter(self, keep: list[int]) -> "DecodeBatch":
        """The rows `keep`, in that order."""


Batch = TypeVar("Batch", bound=DecodeBatch)

# take(row index, token chosen for it, its log-probabilities (V,) or None) -> the token the row
# reads next, or None when the row is finished.
Take = Callable[[int, int, "torch.Tensor | None"], "int | None"]


def choose_tokens(batch: DecodeBatch, generated: list[int], sampling: list[bool] | None = None,
                  with_logprobs: bool = False) -> tuple[list[int], torch.Tensor | None]:
    """The token each row chose and, when asked, every row's log-probabilities (on the CPU).
    `generated` counts each row's tokens so far (what min_tokens and repetition rules read);
    rows whose `sampling` entry is False (still reading a prompt) choose nothing and keep their
    random streams where they are."""
    logprobs = batch.logprobs().cpu() if with_logprobs else None
    active = None if sampling is None or all(sampling) else torch.tensor(sampling, dtype=torch.bool, device=batch.device)
    chosen = batch.choose(torch.tensor(generated, device=batch.device), active)
    return chosen.tolist(), logprobs


def settle_rows(chosen: list[int], logprobs: torch.Tensor | None, take: Take,
                on_error: Callable[[int, Exception], None] | None = None) -> tuple[list[int], list[int]]:
    """Hand each row its token. Returns the rows that go on and the token each reads next. A row
    whose `take` raises is passed to `on_error` and dropped (without `on_error`, the error
    propagates)."""
    keep: list[int] = []
    inputs: list[int] = []
    for index, token in enumerate(chosen):
        try:
            next_input = take(index, token, None if logprobs is None else logprobs[index])
        except Exception as error:
            if on_error is None:
                raise
            on_error(index, error)
            continue
        if next_input is not None:
            keep.append(index)
            inputs.append(next_input)
    return keep, inputs


def advance_rows(batch: Batch, keep: list[int], inputs: list[int]) -> Batch | None:
    """The rows `keep` of `batch`, each advanced by its input token; None when no row is left."""
    if not keep:
        return None
    if len(keep) < len(batch):
        batch = batch.filter(keep)
    batch.advance(torch.tensor(inputs, device=batch.device))
    return batch


def step_rows(batch: Batch, generated: list[int], take: Take, with_logprobs: bool = False) -> tuple[Batch | None, list[int]]:
    """One whole step: choose, settle, advance. Returns the batch of the rows that go on (None
    when none does) and their indices in the batch that came in."""
    chosen, logprobs = choose_tokens(batch, generated, with_logprobs=with_logprobs)
    keep, inputs = settle_rows(chosen, logprobs, take)
    return advance_rows(batch, keep, inputs), keep
