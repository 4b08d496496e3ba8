"""The one interface the HTTP layer uses to reach the models, and the data it exchanges.

Handlers call `generate` (or `generate_stream`), `submit` (every batch task: score, caption, ...),
`abort` and `health`; whether the engine runs in process,
batches continuously or spreads over GPU workers is invisible to them (and tests can swap in
a fake).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Protocol

from models.sampling import SamplingParams


@dataclass
class GenerateInput:
    model_id: str
    prompt: str
    params: list[SamplingParams]  # one per choice


@dataclass
class Choice:
    text: str
    tokens: list[str]
    finish_reason: str


@dataclass
class GenerateOutput:
    choices: list[Choice]
    prompt_tokens: int
    # choice index -> its token events (with log-probabilities when they were asked for)
    token_events: dict[int, list] = field(default_factory=dict)


@dataclass
class ScoreInput:
    model_id: str
    texts: list[str] | None = None
    tokens: list[list[str]] | None = None
    add_bos: bool = True
    add_eos: bool = True
    unknown_words: str = "spell"  # "spell": <unk> plus the spelling model; "unk": the <unk> token alone
    contexts: list[str | None] | None = None  # per text: text read into the state first, not scored
    top_logprobs: int = 0  # per scored token, also this many likeliest tokens at its position (same pass)


@dataclass
class ScoredText:
    tokens: list[str]
    token_logprobs: list[float]
    logprob: float
    num_tokens: int
    perplexity: float
    oov: list[bool]
    num_unknown: int = 0
    unknown_words: str = "unk"  # how unknown words were scored
    text_offset: list[int] | None = None  # where each token is in the text (texts given as text)
    top_logprobs: list[dict[str, float]] | None = None  # per token, when asked for (ScoreInput.top_logprobs)


@dataclass
class CaptionInput:
    model_id: str
    pixels: bytes  # uint8 (3, size, size), already decoded and resized
    size: int
    n: int
    # Decoding parameters: one per caption for the sampling strategies; one for beam search
    # (strategy "beam", its beam_size), which returns its n best.
    params: list[SamplingParams]
    no_repeat_ngram_size: int = 3  # beam search: no caption repeats an n-gram this long (0: off)


@dataclass(frozen=True)
class BatchSettings:
    """How a batch task batches: it runs once `max_items` items wait, or once its oldest job
    has waited `max_wait_s`."""

    max_items: int
    max_wait_s: float


@dataclass
class EngineHealth:
    ready: bool
    workers: list[dict] = field(default_factory=list)
    detail: str = ""


class Engine(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    # Every request may carry the caller's own id (unique among the requests in flight; one is
    # made when none is given): `abort(request_id)` stops it, and its awaiting caller gets
    # RequestAborted.
    async def generate(self, request: GenerateInput, logprobs: int | None = None, request_id: str | None = None) -> GenerateOutput: ...

    def generate_stream(self, request: GenerateInput, logprobs: int | None = None, stream: bool = True,
                        request_id: str | None = None) -> AsyncIterator[object]:
        """PromptInfo, then a TokenEvent per token and a ChoiceFinished per choice."""

    async def submit(self, task: str, request, request_id: str | None = None):
        """Run one request of a batch task (`app.engine.tasks.BATCH_TASKS`: score, caption, ...)
        and return its result (ScoreInput -> list[ScoredText]; CaptionInput -> (text, logprob,
        ranking score, finished) per caption, best first)."""

    async def abort(self, request_id: str) -> bool:
        """Stop a request in flight; False when no such request is in flight."""

    async def load_models(self, paths: dict[str, Path], revisions: dict[str, str],
                          precisions: dict[str, str] | None = None) -> dict[str, str]:
        """Serve these model directories from now on, each at its precision (fp32 when not
        named); returns the models that failed to load."""

    def health(self) -> EngineHealth: ...


class EngineError(Exception):
    """Base of the failures an engine reports; errors.py maps each to its status code."""


class EngineTimeout(EngineError):
    """The request ran past its deadline (504)."""


class EngineOverloaded(EngineError):
    """The queue is full (429); `retry_after` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestAborted(EngineError):
    """The caller aborted the request (`Engine.abort`)."""


class DuplicateRequestId(EngineError):
    """A request id that is already in flight (409)."""


class EngineUnavailable(EngineError):
    """No worker can take the request now, or its worker died (503)."""
