"""The engine's tasks. A batch task is one object: its name, the capability of
`models.registry` a model needs for it, the input type its requests carry, how many batch
items a request adds, its default batching and its runner. Workers queue each task's jobs and
run them together once enough items wait or the oldest has waited long enough; the pool
submits them (`WorkerPool.submit(task, input, request_id)`). Adding an endpoint is a route, a
schema and one task in BATCH_TASKS. Generation is the task with a continuous batcher
(`app.engine.batcher`): rows join and leave between steps."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from app.engine.base import BatchSettings, CaptionInput, ScoreInput
from app.engine.caption_tasks import run_caption_batch
from app.engine.lattice_tasks import LatticeInput, count_lattices, run_lattice_batch
from app.engine.messages import JobError, TaskJob
from app.engine.score_tasks import run_score_batch
from app.engine.session_tasks import SessionInput, count_ops, run_session_batch
from models.registry import CAPTION, GENERATE, SCORE

logger = logging.getLogger(__name__)

LATTICE = "lattice"  # lattice rescoring: any model that scores text
# Stateful sessions: models with a recurrent state, the ones that generate.
SESSION = "session"

# A batch runner: (models, jobs, emit, worker config) -> the batch sizes it ran.
Runner = Callable[[dict, list[TaskJob], Callable, "WorkerConfig"], list[int]]  # noqa: F821 - app.engine.worker


def one_item(request) -> int:
    return 1


@dataclass(frozen=True)
class BatchTask:
    name: str
    input_type: type
    run: Runner
    default_batching: BatchSettings
    requires: str = ""  # the models.registry task a model must be able to do (default: `name`)
    count_items: Callable[[object], int] = one_item  # how many batch items a request adds

    @property
    def capability(self) -> str:
        return self.requires or self.name


def _texts(request: ScoreInput) -> int:
    return len(request.texts or request.tokens or [])


BATCH_TASKS: dict[str, BatchTask] = {task.name: task for task in (
    BatchTask(SCORE, ScoreInput, run_score_batch, BatchSettings(64, 0.005), count_items=_texts),
    BatchTask(CAPTION, CaptionInput, run_caption_batch, BatchSettings(64, 0.005)),
    BatchTask(LATTICE, LatticeInput, run_lattice_batch, BatchSettings(16, 0.005), requires=SCORE, count_items=count_lattices),
    BatchTask(SESSION, SessionInput, run_session_batch, BatchSettings(512, 0.002), requires=GENERATE, count_items=count_ops),
)}


class DynamicBatch:
    """Jobs of one task waiting to run together."""

    def __init__(self, task: BatchTask, settings: BatchSettings) -> None:
        self.task, self.settings = task, settings
        self.jobs: list[TaskJob] = []
        self.waiting_items = 0
        self.since: float | None = None

    def add(self, job: TaskJob) -> None:
        if not self.jobs:
            self.since = time.monotonic()
        self.jobs.append(job)
        self.waiting_items += self.task.count_items(job.request)

    def abort(self, request_id: str) -> None:
        self.jobs = [job for job in self.jobs if job.request_id != request_id]
        self.waiting_items = sum(self.task.count_items(job.request) for job in self.jobs)

    def deadline(self) -> float | None:
        return None if not self.jobs else self.since + self.settings.max_wait_s

    def due(self) -> bool:
        if not self.jobs:
            return False
        return self.waiting_items >= self.settings.max_items or time.monotonic() >= self.deadline()

    def run(self, models: dict, emit, config) -> list[int]:
        """Run the waiting jobs together. When the batch raises, each job that has no answer yet
        runs alone, so a job that cannot run fails by itself and the others get the answers
        they would have had alone (results never depend on batch neighbours)."""
        jobs, self.jobs, self.waiting_items = self.jobs, [], 0
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
