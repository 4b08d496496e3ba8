"""A worker: owns one device, loads every model onto it and runs the batching loop.

The loop alternates between reading its inbox (new jobs, aborts) and doing one unit of work:
each task's dynamic batch when it is due (`app.engine.tasks`), then one continuous-batching step
per model with live sequences. Events of a step travel back as one message. The same loop runs in a child
process (the default: a crash cannot take the server down, and the pool restarts it) or in a
thread (`worker_mode="thread"`, for embedding).
"""
from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.base import BatchSettings
from app.engine.messages import Abort, GenerateJob, JobError, LoadModels, ModelsLoaded, Ready, Shutdown, StepReport, TaskJob
from app.engine.tasks import BATCH_TASKS, DynamicBatch
from models.registry import GENERATE, can, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: int
    model_paths: dict[str, Path]
    device: str
    max_batch_size: int  # live sequences per generation step
    batching: dict[str, BatchSettings]  # per batch task (app.engine.tasks.BATCH_TASKS)
    limits: TokenLimits
    threads: int | None = None
    prompt_cache_bytes: int = 0  # per model: states after prompts read (app.engine.prompt_cache)
    single_thread_rows: int = 0  # CPU generation steps with at most this many live rows run on one thread (0: never)
    model_precisions: dict[str, str] = field(default_factory=dict)  # model id -> what it computes in (fp32 when absent)


def load_models(paths: dict[str, Path], device: str, precisions: dict[str, str] | None = None) -> tuple[dict, dict[str, str]]:
    """Load the models the catalogue accepted, each at its precision (fp32 when not named); one
    that fails here (out of device memory, a file changed since) is reported and skipped, never
    fatal to the worker."""
    models, failures = {}, {}
    for model_id, directory in paths.items():
        try:
            models[model_id] = load_model(directory, device, (precisions or {}).get(model_id, "fp32"))
        except Exception as error:  # noqa: BLE001 - the other models still serve
            failures[model_id] = f"{type(error).__name__}: {error}"
            logger.error("worker could not load %s: %s", model_id, failures[model_id])
    return models, failures


STATS_INTERVAL_S = 0.25
# Live rows up to which a step ran as fast on one CPU thread as on two (the default of
# single_thread_rows for workers of at most two threads; see WorkerLoop.set_step_threads).
SMALL_STEP_ROWS = 4


class WorkerLoop:
    def __init__(self, config: WorkerConfig, inbox, outbox, parent_pid: int | None = None) -> None:
        self.config, self.inbox, self.outbox = config, inbox, outbox
        # A worker process whose server was killed (SIGKILL, OOM) gets no Shutdown message: it
        # notices it has been re-parented and exits instead of holding its memory forever.
        self.parent_pid = parent_pid
        self.models: dict = {}
        self.batchers: dict[str, ContinuousBatcher] = {}
        self.batches = {name: DynamicBatch(task, config.batching.get(name, task.default_batching)) for name, task in BATCH_TASKS.items()}
        self.report = StepReport()
        self.last_flush = 0.0
        # Batchers of replaced model revisions: they finish their live sequences, then go.
        self.retired: list[ContinuousBatcher] = []
        self.threads = torch.get_num_threads()  # the worker's torch CPU threads (run() applies config.threads)

    def emit(self, event) -> None:
        self.report.events.append(event)

    def flush(self) -> None:
        """Send what this step produced. A step with events is sent at once; one with only
        batch sizes for the metrics waits (up to STATS_INTERVAL_S) to go with a later one, so a
        step that finished nothing costs no message, no pickling and no wake-up of the server."""
        report = self.report
        if not (report.events or report.batch_sizes):
            return
        now = time.monotonic()
        if report.events or now - self.last_flush >= STATS_INTERVAL_S or not self.generating():
            self.last_flush = now
            self.report.live_rows = sum(len(b.rows) + len(b.waiting) for b in (*self.batchers.values(), *self.retired))
            self.outbox.put(self.report)
            self.report = StepReport()

    def run(self) -> None:
        self.start()
        while True:
            if not self.receive() or (self.parent_pid is not None and os.getppid() != self.parent_pid):
                return
            self.run_due_work()
            self.flush()

    def start(self) -> None:
        """Load the models onto the device and tell the pool this worker is ready."""
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.threads = torch.get_num_threads()
        self.models, failures = load_models(self.config.model_paths, self.config.device, self.config.model_precisions)
        self.batchers = {
            model_id: ContinuousBatcher(loaded, self.config.max_batch_size, self.config.limits, self.config.prompt_cache_bytes)
            for model_id, loaded in self.models.items()
            if can(loaded.model_type, GENERATE)
        }
        self.outbox.put(Ready(self.config.worker_id, sorted(self.models), self.config.device, failures))

    def generating(self) -> bool:
        return any(batcher.busy for batcher in (*self.batchers.values(), *self.retired))

    def wait_time(self) -> float | None:
        """How long the inbox may block: not at all while sequences are live, until the score
        batch window closes while scores wait, a short poll otherwise."""
        if self.generating():
            return None
        deadlines = [d for d in (batch.deadline() for batch in self.batches.values()) if d is not None]
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
            self.dispatch(message)

    def dispatch(self, message) -> None:
        if isinstance(message, (GenerateJob, TaskJob)):
            task = BATCH_TASKS.get(message.task) if isinstance(message, TaskJob) else None
            capability = task.capability if task else GENERATE
            loaded = self.models.get(message.model_id)
            if isinstance(message, TaskJob) and task is None:
                self.emit(JobError(message.request_id, "failed", f"this worker has no task {message.task!r}"))
            elif loaded is None or not can(loaded.model_type, capability):
                self.emit(JobError(message.request_id, "failed", f"no model {message.model_id!r} that can {capability} is loaded on this worker"))
            elif task is None:
                logger.info("request %s: generate with %s", message.request_id, message.model_id)
                self.batchers[message.model_id].submit(message, self.emit)
            else:
                logger.info("request %s: %s with %s", message.request_id, task.name, message.model_id)
                self.batches[task.name].add(message)
        elif isinstance(message, Abort):
            logger.info("request %s: aborted", message.request_id)
            for batch in self.batches.values():
                batch.abort(message.request_id)
            for batcher in (*self.batchers.values(), *self.retired):
                batcher.abort(message.request_id)
        elif isinstance(message, LoadModels):
            self.reload(message)

    def reload(self, message: LoadModels) -> None:
        """Serve a new set of model directories. Queued score and caption jobs run first on the
        models they were sent to; live sequences of a replaced model finish on its old weights."""
        self.run_due_work(flush_batches=True)
        wanted = message.paths
        changed = {m: p for m, p in wanted.items() if m not in self.models or self.models[m].revision != message.revisions.get(m)}
        loaded, failures = load_models(changed, self.config.device, message.precisions)
        for model_id in [m for m in self.models if m not in wanted or m in loaded]:
            old = self.batchers.pop(model_id, None)
            if old is not None and old.busy:
                self.retired.append(old)
            del self.models[model_id]
        for model_id, model in loaded.items():
            self.models[model_id] = model
            if can(model.model_type, GENERATE):
                self.batchers[model_id] = ContinuousBatcher(model, self.config.max_batch_size, self.config.limits, self.config.prompt_cache_bytes)
        self.emit(ModelsLoaded(message.request_id, self.config.worker_id, sorted(self.models), failures))

    def run_due_work(self, flush_batches: bool = False) -> None:
        self.use_threads(self.threads)  # score and caption batches get every thread
        for batch in self.batches.values():
            if flush_batches or batch.due():
                self.report.add_batch_sizes(batch.task.name, batch.run(self.models, self.emit, self.config))
        if flush_batches:
            return
        self.set_step_threads()
        for batcher in (*self.batchers.values(), *self.retired):
            try:
                size = batcher.step(self.emit)
            except Exception as error:  # noqa: BLE001 - a step that failed outside any one row: its requests fail, the worker lives
                logger.exception("a generation step failed; failing the requests it held")
                batcher.fail_all(error, self.emit)
                continue
            if size:
                self.report.add_batch_sizes(GENERATE, [size])
                self.report.add_prompt_tokens(batcher.take_prompt_tokens())
        self.retired = [batcher for batcher in self.retired if batcher.busy]

    def set_step_threads(self) -> None:
        """One CPU thread for a generation step with few live rows and none waiting to join.
        Such a step is as fast on one thread as on two, while the second thread spins between
        the step's parallel regions and holds a whole core the HTTP process and other work could
        use (docs/benchmarks/thread-settings.md). Joining rows may need a prefill, which every
        thread speeds up."""
        batchers = (*self.batchers.values(), *self.retired)
        few = (self.config.single_thread_rows and self.config.device == "cpu" and not any(b.waiting for b in batchers)
               and sum(len(b.rows) for b in batchers) <= self.config.single_thread_rows)
        self.use_threads(1 if few else self.threads)

    @staticmethod
    def use_threads(count: int) -> None:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)


def process_main(config: WorkerConfig, inbox, outbox) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{config.worker_id}[{os.getpid()}] %(name)s: %(message)s")
    try:
        WorkerLoop(config, inbox, outbox, parent_pid=os.getppid()).run()
    except KeyboardInterrupt:
        pass
