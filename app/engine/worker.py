"""A worker: owns one device, loads every model onto it and runs the batching loop.

The loop alternates between reading its inbox (new jobs, aborts) and doing one unit of work:
a dynamic score batch when one is due, then one continuous-batching step per model with live
sequences. Events of a step travel back as one message. The same loop runs in a child
process (the default: a crash cannot take the server down, and the pool restarts it) or in a
thread (`worker_mode="thread"`, for embedding).
"""
from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from app.engine.batcher import ContinuousBatcher, run_score_batch
from app.engine.caption_tasks import run_caption_batch
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import (
    Abort,
    CaptionJob,
    GenerateJob,
    JobError,
    LoadModels,
    ModelsLoaded,
    Ready,
    ScoreJob,
    Shutdown,
    StepReport,
)
from models.registry import CAPTION, GENERATE, can, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: int
    model_paths: dict[str, Path]
    device: str
    max_batch_size: int
    score_max_batch_size: int
    score_max_wait_s: float
    limits: TokenLimits
    threads: int | None = None


def load_models(paths: dict[str, Path], device: str) -> tuple[dict, dict[str, str]]:
    """Load the models the catalogue accepted; one that fails here (out of device memory, a
    file changed since) is reported and skipped, never fatal to the worker."""
    models, failures = {}, {}
    for model_id, directory in paths.items():
        try:
            models[model_id] = load_model(directory, device)
        except Exception as error:  # noqa: BLE001 - the other models still serve
            failures[model_id] = f"{type(error).__name__}: {error}"
            logger.error("worker could not load %s: %s", model_id, failures[model_id])
    return models, failures


STATS_INTERVAL_S = 0.25


class WorkerLoop:
    def __init__(self, config: WorkerConfig, inbox, outbox, parent_pid: int | None = None) -> None:
        self.config, self.inbox, self.outbox = config, inbox, outbox
        # A worker process whose server was killed (SIGKILL, OOM) gets no Shutdown message: it
        # notices it has been re-parented and exits instead of holding its memory forever.
        self.parent_pid = parent_pid
        self.models: dict = {}
        self.batchers: dict[str, ContinuousBatcher] = {}
        self.score_jobs: list[ScoreJob] = []
        self.score_since: float | None = None
        self.caption_jobs: list[CaptionJob] = []
        self.caption_since: float | None = None
        self.report = StepReport()
        self.last_flush = 0.0
        # Batchers of replaced model revisions: they finish their live sequences, then go.
        self.retired: list[ContinuousBatcher] = []

    def emit(self, event) -> None:
        self.report.events.append(event)

    def flush(self) -> None:
        """Send what this step produced. A step with events is sent at once; one with only
        batch sizes for the metrics waits (up to STATS_INTERVAL_S) to go with a later one, so a
        step that finished nothing costs no message, no pickling and no wake-up of the server."""
        report = self.report
        if not (report.events or report.generation_batch_sizes or report.score_batch_sizes or report.caption_batch_sizes):
            return
        now = time.monotonic()
        if report.events or now - self.last_flush >= STATS_INTERVAL_S or not self.generating():
            self.last_flush = now
            self.report.live_rows = sum(len(b.rows) + len(b.waiting) for b in (*self.batchers.values(), *self.retired))
            self.outbox.put(self.report)
            self.report = StepReport()

    def run(self) -> None:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.models, failures = load_models(self.config.model_paths, self.config.device)
        self.batchers = {
            model_id: ContinuousBatcher(loaded, self.config.max_batch_size, self.config.limits)
            for model_id, loaded in self.models.items()
            if can(loaded.model_type, GENERATE)
        }
        self.outbox.put(Ready(self.config.worker_id, sorted(self.models), self.config.device, failures))
        while True:
            if not self.receive() or (self.parent_pid is not None and os.getppid() != self.parent_pid):
                return
            self.work()
            self.flush()

    def generating(self) -> bool:
        return any(batcher.busy for batcher in (*self.batchers.values(), *self.retired))

    def wait_time(self) -> float | None:
        """How long the inbox may block: not at all while sequences are live, until the score
        batch window closes while scores wait, a short poll otherwise."""
        if self.generating():
            return None
        deadlines = [since + self.config.score_max_wait_s for jobs, since in
                     ((self.score_jobs, self.score_since), (self.caption_jobs, self.caption_since)) if jobs]
        if deadlines:
            return max(0.0, min(deadlines) - time.monotonic())
        return 0.05

    def receive(self) -> bool:
        """Handle every waiting message; False once asked to shut down."""
        timeout = self.wait_time()
        while True:
            try:
                message = self.inbox.get(timeout=timeout) if timeout else self.inbox.get_nowait()
            except queue.Empty:
                return True
            timeout = None
            if isinstance(message, Shutdown):
                return False
            self.handle(message)

    def handle(self, message) -> None:
        if isinstance(message, GenerateJob):
            batcher = self.batchers.get(message.model_id)
            if batcher is None:
                self.emit(JobError(message.request_id, "failed", f"model {message.model_id!r} is not loaded on this worker"))
            else:
                batcher.submit(message, self.emit)
        elif isinstance(message, ScoreJob):
            if message.request.model_id not in self.models:
                self.emit(JobError(message.request_id, "failed", f"model {message.request.model_id!r} is not loaded on this worker"))
                return
            if not self.score_jobs:
                self.score_since = time.monotonic()
            self.score_jobs.append(message)
        elif isinstance(message, CaptionJob):
            loaded = self.models.get(message.request.model_id)
            if loaded is None or not can(loaded.model_type, CAPTION):
                self.emit(JobError(message.request_id, "failed", f"captioner {message.request.model_id!r} is not loaded on this worker"))
                return
            if not self.caption_jobs:
                self.caption_since = time.monotonic()
            self.caption_jobs.append(message)
        elif isinstance(message, Abort):
            self.score_jobs = [job for job in self.score_jobs if job.request_id != message.request_id]
            self.caption_jobs = [job for job in self.caption_jobs if job.request_id != message.request_id]
            for batcher in (*self.batchers.values(), *self.retired):
                batcher.abort(message.request_id)
        elif isinstance(message, LoadModels):
            self.reload(message)

    def reload(self, message: LoadModels) -> None:
        """Serve a new set of model directories. Queued score and caption jobs run first on the
        models they were sent to; live sequences of a replaced model finish on its old weights."""
        self.work(flush_batches=True)
        wanted = message.paths
        changed = {m: p for m, p in wanted.items() if m not in self.models or self.models[m].revision != message.revisions.get(m)}
        loaded, failures = load_models(changed, self.config.device)
        for model_id in [m for m in self.models if m not in wanted or m in loaded]:
            old = self.batchers.pop(model_id, None)
            if old is not None and old.busy:
                self.retired.append(old)
            del self.models[model_id]
        for model_id, model in loaded.items():
            self.models[model_id] = model
            if can(model.model_type, GENERATE):
                self.batchers[model_id] = ContinuousBatcher(model, self.config.max_batch_size, self.config.limits)
        self.emit(ModelsLoaded(message.request_id, self.config.worker_id, sorted(self.models), failures))

    def score_due(self) -> bool:
        if not self.score_jobs:
            return False
        waiting = sum(len(job.request.texts or job.request.tokens or []) for job in self.score_jobs)
        waited = time.monotonic() - self.score_since
        return waiting >= self.config.score_max_batch_size or waited >= self.config.score_max_wait_s

    def captions_due(self) -> bool:
        if not self.caption_jobs:
            return False
        return len(self.caption_jobs) >= self.config.score_max_batch_size or time.monotonic() - self.caption_since >= self.config.score_max_wait_s

    def work(self, flush_batches: bool = False) -> None:
        if self.caption_jobs and (flush_batches or self.captions_due()):
            jobs, self.caption_jobs = self.caption_jobs, []
            self.report.caption_batch_sizes += run_caption_batch(self.models, jobs, self.emit)
        if self.score_jobs and (flush_batches or self.score_due()):
            jobs, self.score_jobs = self.score_jobs, []
            self.report.score_batch_sizes += run_score_batch(
                self.models, jobs, self.config.limits, self.config.score_max_batch_size, self.emit
            )
        if flush_batches:
            return
        for batcher in (*self.batchers.values(), *self.retired):
            size = batcher.step(self.emit)
            if size:
                self.report.generation_batch_sizes.append(size)
        self.retired = [batcher for batcher in self.retired if batcher.busy]


def process_main(config: WorkerConfig, inbox, outbox) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{config.worker_id}[{os.getpid()}] %(name)s: %(message)s")
    try:
        WorkerLoop(config, inbox, outbox, parent_pid=os.getppid()).run()
    except KeyboardInterrupt:
        pass
