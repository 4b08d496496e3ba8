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
from app.engine.lm_tasks import TokenLimits
from app.engine.caption_tasks import run_caption_batch
from app.engine.messages import Abort, CaptionJob, GenerateJob, JobError, Ready, ScoreJob, Shutdown, StepReport
from models.checkpoint import CONFIG_FILE, CheckpointError
from models.registry import load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: int
    models_dir: Path
    device: str
    max_batch_size: int
    score_max_batch_size: int
    score_max_wait_s: float
    limits: TokenLimits
    threads: int | None = None


def load_models(models_dir: Path, device: str) -> dict:
    models = {}
    if models_dir.is_dir():
        for directory in sorted(p for p in models_dir.iterdir() if (p / CONFIG_FILE).is_file()):
            try:
                models[directory.name] = load_model(directory, device)
            except (CheckpointError, OSError, ValueError, RuntimeError) as error:
                logger.error("worker could not load %s: %s", directory.name, error)
    return models


class WorkerLoop:
    def __init__(self, config: WorkerConfig, inbox, outbox) -> None:
        self.config, self.inbox, self.outbox = config, inbox, outbox
        self.models: dict = {}
        self.batchers: dict[str, ContinuousBatcher] = {}
        self.score_jobs: list[ScoreJob] = []
        self.score_since: float | None = None
        self.caption_jobs: list[CaptionJob] = []
        self.caption_since: float | None = None
        self.report = StepReport()

    def emit(self, event) -> None:
        self.report.events.append(event)

    def flush(self) -> None:
        if self.report.events or self.report.generation_batch_sizes or self.report.score_batch_sizes or self.report.caption_batch_sizes:
            self.report.live_rows = sum(len(b.rows) + len(b.waiting) for b in self.batchers.values())
            self.outbox.put(self.report)
            self.report = StepReport()

    def run(self) -> None:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.models = load_models(self.config.models_dir, self.config.device)
        self.batchers = {
            model_id: ContinuousBatcher(loaded, self.config.max_batch_size, self.config.limits)
            for model_id, loaded in self.models.items()
            if loaded.model_type == "rnn_lm"
        }
        self.outbox.put(Ready(self.config.worker_id, sorted(self.models), self.config.device))
        while True:
            if not self.receive():
                return
            self.work()
            self.flush()

    def generating(self) -> bool:
        return any(batcher.busy for batcher in self.batchers.values())

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
            if loaded is None or loaded.model_type != "captioner":
                self.emit(JobError(message.request_id, "failed", f"captioner {message.request.model_id!r} is not loaded on this worker"))
                return
            if not self.caption_jobs:
                self.caption_since = time.monotonic()
            self.caption_jobs.append(message)
        elif isinstance(message, Abort):
            self.score_jobs = [job for job in self.score_jobs if job.request_id != message.request_id]
            self.caption_jobs = [job for job in self.caption_jobs if job.request_id != message.request_id]
            for batcher in self.batchers.values():
                batcher.abort(message.request_id)

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

    def work(self) -> None:
        if self.captions_due():
            jobs, self.caption_jobs = self.caption_jobs, []
            self.report.caption_batch_sizes += run_caption_batch(self.models, jobs, self.emit)
        if self.score_due():
            jobs, self.score_jobs = self.score_jobs, []
            self.report.score_batch_sizes += run_score_batch(
                self.models, jobs, self.config.limits, self.config.score_max_batch_size, self.emit
            )
        for batcher in self.batchers.values():
            size = batcher.step(self.emit)
            if size:
                self.report.generation_batch_sizes.append(size)


def process_main(config: WorkerConfig, inbox, outbox) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{config.worker_id}[{os.getpid()}] %(name)s: %(message)s")
    try:
        WorkerLoop(config, inbox, outbox).run()
    except KeyboardInterrupt:
        pass
