"""Messages between the worker pool (in the HTTP process) and its workers. They cross a
process boundary through multiprocessing queues; both ends are this service's own code."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.sampling import SamplingParams


# pool -> worker
@dataclass
class GenerateJob:
    request_id: str
    model_id: str
    prompt: str
    params: list[SamplingParams]
    logprobs: int | None = None  # also report the chosen token's log-probability and this many alternatives
    stream: bool = False  # send a TokenEvent per token (otherwise only what logprobs needs, and the finish)


@dataclass
class TaskJob:
    """A request for a batch task (`app.engine.tasks`): its name and its input."""

    request_id: str
    task: str
    request: object  # the task's input type (ScoreInput, CaptionInput, ...), carrying model_id

    @property
    def model_id(self) -> str:
        return self.request.model_id


@dataclass
class Abort:
    request_id: str


@dataclass
class Shutdown:
    pass


# worker -> pool
@dataclass
class Ready:
    worker_id: int
    models: list[str]
    device: str
    failures: dict[str, str] = field(default_factory=dict)  # model id -> why it did not load here


@dataclass
class LoadModels:
    """Serve these model directories from now on (a reload): load what is new or changed."""

    request_id: str
    paths: dict[str, Path]
    revisions: dict[str, str]
    precisions: dict[str, str] = field(default_factory=dict)  # model id -> what it computes in (fp32 when absent)


@dataclass
class ModelsLoaded:
    request_id: str
    worker_id: int
    models: list[str]
    failures: dict[str, str]


@dataclass
class TokenEvent:
    request_id: str
    choice: int
    token: str
    text: str  # text this token adds to the choice (may be empty)
    logprob: float | None = None
    top_logprobs: dict[str, float] | None = None
    offset: int = 0  # where the token's text starts in the choice's text (tracked with logprobs or streams)


@dataclass
class ChoiceFinished:
    request_id: str
    choice: int
    finish_reason: str
    text: str
    tokens: list[str]
    first_token_s: float | None = None  # from the worker receiving the job to this choice's first token
    per_token_s: float | None = None  # mean time between this choice's tokens


@dataclass
class PromptInfo:
    request_id: str
    prompt_tokens: int


@dataclass
class JobResult:
    request_id: str
    result: object


@dataclass
class JobError:
    request_id: str
    kind: str  # "invalid" (422) or "failed" (503)
    message: str
    param: str | None = None


@dataclass
class StepReport:
    """One worker step's events, sent as one message to keep IPC cheap."""

    events: list = field(default_factory=list)
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)  # task -> sizes of the batches it ran

    live_rows: int = 0  # sequences in the worker's slot tables after this step
    prompt_tokens: dict[str, int] = field(default_factory=dict)  # "cache" / "model" -> prompt tokens taken from the prompt cache or read

    def add_batch_sizes(self, task: str, sizes: list[int]) -> None:
        if sizes:
            self.batch_sizes.setdefault(task, []).extend(sizes)

    def add_prompt_tokens(self, counts: dict[str, int]) -> None:
        for source, count in counts.items():
            if count:
                self.prompt_tokens[source] = self.prompt_tokens.get(source, 0) + count
