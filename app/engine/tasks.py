"""The worker's task table: for each job type, the task it belongs to and how its jobs are
batched and run. Generation has its continuous batcher (one step at a time, rows joining and
leaving); every other task is a dynamic batch: jobs wait until enough items are waiting or the
oldest has waited long enough, then run together. Adding an endpoint is a route, a schema and
one entry here (and, for a new kind of model, its entry in models.registry)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from app.engine.batcher import run_score_batch
from app.engine.caption_tasks import run_caption_batch
from app.engine.messages import CaptionJob, GenerateJob, JobError, ScoreJob
from app.settings import BatchSettings
from models.registry import CAPTION, GENERATE, SCORE

logger = logging.getLogger(__name__)

# A batch runner: (models, jobs, emit, worker config) -> the batch sizes it ran.
Runner = Callable[[dict, list, Callable, object], list[int]]


@dataclass(frozen=True)
class DynamicTask:
    name: str  # a task of models.registry: the model must be able to do it
    job_type: type
    items: Callable[[object], int]  # how many items a job adds to its batch
    run: Runner


def _score_items(job: ScoreJob) -> int:
    return len(job.request.texts or job.request.tokens or [])


DYNAMIC_TASKS: dict[type, DynamicTask] = {task.job_type: task for task in (
    DynamicTask(SCORE, ScoreJob, _score_items,
                lambda models, jobs, emit, config: run_score_batch(models, jobs, config.limits,
                                                                   config.batching[SCORE].max_items, emit)),
    DynamicTask(CAPTION, CaptionJob, lambda job: 1, lambda models, jobs, emit, config: run_caption_batch(models, jobs, emit)),
)}
# The task of every job type the worker accepts.
JOB_TASKS: dict[type, str] = {GenerateJob: GENERATE, **{job_type: task.name for job_type, task in DYNAMIC_TASKS.items()}}


class DynamicBatch:
    """Jobs of one task waiting to run together."""

    def __init__(self, task: DynamicTask, settings: BatchSettings) -> None:
        self.task, self.settings = task, settings
        self.jobs: list = []
        self.items = 0  # items the waiting jobs hold
        self.since: float | None = None

    def add(self, job) -> None:
        if not self.jobs:
            self.since = time.monotonic()
        self.jobs.append(job)
        self.items += self.task.items(job)

    def abort(self, request_id: str) -> None:
        self.jobs = [job for job in self.jobs if job.request_id != request_id]
        self.items = sum(self.task.items(job) for job in self.jobs)

    def deadline(self) -> float | None:
        return None if not self.jobs else self.since + self.settings.max_wait_s

    def due(self) -> bool:
        if not self.jobs:
            return False
        return self.items >= self.settings.max_items or time.monotonic() >= self.deadline()

    def run(self, models: dict, emit, config) -> list[int]:
        """Run the waiting jobs together. When the batch raises, each job that has no answer yet
        runs alone, so a job that cannot run fails by itself and the others get the answers
        they would have had alone (results never depend on batch neighbours)."""
        jobs, self.jobs, self.items = self.jobs, [], 0
        answered: set[str] = set()

        def record(event) -> None:
            answered.add(event.request_id)
            emit(event)

        try:
            return self.task.run(models, jobs, record, config)
        except Exception:  # noqa: BLE001 - isolated below, job by job
            if len(jobs) > 1:
                logger.warning("a %s batch of %d jobs failed; running its jobs one at a time", self.task.name, len(jobs))
        sizes: list[int] = []
        for job in jobs:
            if job.request_id in answered:
                continue
            try:
                sizes += self.task.run(models, [job], emit, config)
            except Exception as error:  # noqa: BLE001 - this job's request fails, the worker lives
                logger.error("request %s failed on this worker: %s: %s", job.request_id, type(error).__name__, error, exc_info=error)
                emit(JobError(job.request_id, "failed", f"this request failed on the worker ({type(error).__name__}: {error}); "
                                                        f"other requests are unaffected (request id {job.request_id})"))
        return sizes
