"""The worker pool: the engine the HTTP layer talks to.

One worker per device (each visible GPU, or the CPU), each a child process by default. The
pool routes a request to the least-loaded ready worker, bounds how many requests a worker
may hold (429 beyond that), enforces per-request deadlines (504), forwards aborts when a
client goes away, and watches the processes: a dead worker's requests fail with 503 and the
worker is started again.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import torch

from app.engine.base import (
    Choice,
    DuplicateRequestId,
    EngineError,
    EngineHealth,
    EngineOverloaded,
    EngineTimeout,
    EngineUnavailable,
    GenerateInput,
    GenerateOutput,
    RequestAborted,
)
from app.engine.messages import (
    Abort,
    ChoiceFinished,
    GenerateJob,
    JobError,
    JobResult,
    LoadModels,
    ModelsLoaded,
    PromptInfo,
    Ready,
    Shutdown,
    StepReport,
    TaskJob,
    TokenEvent,
)
from app.engine.tasks import BATCH_TASKS
from app.engine.worker import WorkerConfig, WorkerLoop, process_main
from app.metrics import Metrics
from models.sampling import InvalidParameter

logger = logging.getLogger(__name__)


# Separates an HTTP request's id from the numbers of the engine jobs it runs (`part_id`).
PART_SEPARATOR = "/"


def part_id(request_id: str, *part: int) -> str:
    """The engine id of one of several jobs an HTTP request runs, numbered by `part` (one or
    more indices, e.g. model and chunk): the request id itself for the first (all zeros),
    `ID/1`, `ID/0.2`, ... for the others, so `abort(ID)` stops them all."""
    if not any(part):
        return request_id
    return request_id + PART_SEPARATOR + ".".join(str(index) for index in part)


class WorkerDied(Exception):
    pass


@dataclass
class PendingRequest:
    request_id: str
    worker_id: int
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    done: bool = False


@dataclass
class WorkerHandle:
    config: WorkerConfig
    inbox: object
    outbox: object
    runner: object  # multiprocessing.Process or threading.Thread
    ready: bool = False
    stopping: bool = False
    live_rows: int = 0
    started_at: float = field(default_factory=time.monotonic)
    crash_backoff_s: float = 0.0  # grows while the worker keeps dying right after it starts
    in_flight: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)  # models this worker could not load
    reader: threading.Thread | None = None

    def alive(self) -> bool:
        return self.runner.is_alive()


def plan_devices(device: str, workers_per_device: int) -> list[str]:
    """auto: one worker per visible CUDA device, the CPU otherwise."""
    if device == "auto":
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    else:
        devices = [d.strip() for d in device.split(",") if d.strip()]
    return [d for d in devices for _ in range(max(1, workers_per_device))]


class WorkerPool:
    def __init__(self, worker_configs: list[WorkerConfig], mode: str, max_in_flight: int, timeout_s: float, metrics: Metrics) -> None:
        self.worker_configs, self.mode = worker_configs, mode
        self.max_in_flight, self.timeout_s, self.metrics = max_in_flight, timeout_s, metrics
        self.workers: dict[int, WorkerHandle] = {}
        self.requests: dict[str, PendingRequest] = {}
        self.restarts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task | None = None
        self._context = multiprocessing.get_context("spawn")

    # life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for config in self.worker_configs:
            self._spawn(config)
        self._monitor = asyncio.create_task(self._watch())

    async def wait_ready(self, timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.workers and all(w.ready for w in self.workers.values()):
                return True
            await asyncio.sleep(0.05)
        return False

    def load_failures(self) -> dict[str, str]:
        """Models some worker could not load (model id -> why)."""
        return {model_id: why for handle in self.workers.values() for model_id, why in handle.failures.items()}

    async def stop(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor  # its frame holds the handles until it has really stopped
        for handle in self.workers.values():
            handle.stopping = True
            handle.inbox.put(Shutdown())
        for handle in self.workers.values():
            await asyncio.to_thread(handle.runner.join, 5)
            if self.mode == "process":
                if handle.runner.is_alive():
                    handle.runner.kill()
                # Never block interpreter exit on data a dead worker will not read.
                for channel in (handle.inbox, handle.outbox):
                    channel.cancel_join_thread()
                    channel.close()
        for request in list(self.requests.values()):
            self._fail(request, EngineUnavailable("the server is shutting down"))
        for handle in self.workers.values():
            if handle.reader is not None:
                await asyncio.to_thread(handle.reader.join, 1.0)
        # Drop the queues now, so their semaphores are released here rather than reported as
        # leaked by multiprocessing's resource tracker at exit.
        self.workers.clear()
        gc.collect()

    def _spawn(self, config: WorkerConfig, crash_backoff_s: float = 0.0) -> None:
        if self.mode == "process":
            inbox, outbox = self._context.Queue(), self._context.Queue()
            runner = self._context.Process(target=process_main, args=(config, inbox, outbox), daemon=True, name=f"rnnserve-worker-{config.worker_id}")
        else:
            inbox, outbox = queue.Queue(), queue.Queue()
            runner = threading.Thread(target=WorkerLoop(config, inbox, outbox).run, daemon=True, name=f"rnnserve-worker-{config.worker_id}")
        handle = WorkerHandle(config, inbox, outbox, runner, crash_backoff_s=crash_backoff_s)
        runner.start()
        handle.reader = threading.Thread(target=self._read, args=(handle,), daemon=True)
        handle.reader.start()
        self.workers[config.worker_id] = handle

    def _read(self, handle: WorkerHandle) -> None:
        """Reader thread: hands the worker's messages to the event loop."""
        while True:
            try:
                message = handle.outbox.get(timeout=0.2)
            except queue.Empty:
                if not handle.alive():
                    return
                continue
            except (EOFError, OSError, ValueError):
                return
            self._loop.call_soon_threadsafe(self._dispatch, handle, message)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            alive = 0
            for worker_id, handle in list(self.workers.items()):
                if handle.alive():
                    alive += handle.ready
                    continue
                if handle.stopping:
                    continue
                # A worker that dies soon after starting (bad model, broken install) is
                # restarted with a growing delay instead of in a tight loop.
                crashed_early = time.monotonic() - handle.started_at < 10.0
                backoff = min(30.0, max(0.5, handle.crash_backoff_s * 2)) if crashed_early else 0.0
                logger.error("worker %d died (exit code %s); restarting it", worker_id, getattr(handle.runner, "exitcode", None))
                for request_id in list(handle.in_flight):
                    request = self.requests.get(request_id)
                    if request is not None:
                        self._fail(request, EngineUnavailable(f"worker {worker_id} died while running this request; retry"))
                if self.mode == "process":
                    handle.inbox.cancel_join_thread()
                self.restarts += 1
                self.metrics.worker_restarts.inc()
                if backoff:
                    handle.stopping = True  # report once; the delayed start below replaces it
                    self._loop.call_later(backoff, self._spawn, handle.config, backoff)
                else:
                    self._spawn(handle.config)
            self.metrics.workers_alive.set(alive)

    # events -----------------------------------------------------------------------------
    def _dispatch(self, handle: WorkerHandle, message) -> None:
        if self.workers.get(handle.config.worker_id) is not handle:
            return  # a message from a worker that has been replaced
        if isinstance(message, Ready):
            handle.ready = True
            handle.failures = dict(message.failures)
            logger.info("worker %d ready on %s with %s", message.worker_id, message.device, ", ".join(message.models) or "no models")
            return
        if isinstance(message, StepReport):
            handle.live_rows = message.live_rows
            for task, sizes in message.batch_sizes.items():
                for size in sizes:
                    self.metrics.batch_size.labels(task).observe(size)
            for source, count in message.prompt_tokens.items():
                self.metrics.prompt_tokens.labels(source).inc(count)
            for event in message.events:
                request = self.requests.get(event.request_id)
                if request is not None and not request.done:
                    request.events.put_nowait(event)

    def _fail(self, request: PendingRequest, error: Exception) -> None:
        if not request.done:
            request.events.put_nowait(error)

    # submission -------------------------------------------------------------------------
    def _submit(self, job) -> PendingRequest:
        ready = [w for w in self.workers.values() if w.ready and w.alive()]
        if not ready:
            raise EngineUnavailable("no worker is ready")
        if job.request_id in self.requests:
            raise DuplicateRequestId(f"request id {job.request_id!r} is already in flight")
        handle = min(ready, key=lambda w: len(w.in_flight))
        if len(handle.in_flight) >= self.max_in_flight:
            raise EngineOverloaded("all workers are at their queue limit; retry shortly", retry_after=1)
        request = PendingRequest(job.request_id, handle.config.worker_id)
        self.requests[job.request_id] = request
        handle.in_flight.add(job.request_id)
        self._report_load(handle)
        handle.inbox.put(job)
        return request

    def _release(self, request: PendingRequest) -> None:
        finished_cleanly = request.done
        request.done = True
        self.requests.pop(request.request_id, None)
        handle = self.workers.get(request.worker_id)
        if handle is not None:
            handle.in_flight.discard(request.request_id)
            self._report_load(handle)
            if not finished_cleanly and handle.alive():
                handle.inbox.put(Abort(request.request_id))  # frees the slot at the next step

    def _report_load(self, handle: WorkerHandle) -> None:
        self.metrics.queue_depth.labels(str(handle.config.worker_id)).set(len(handle.in_flight))
        self.metrics.in_flight_per_worker.set(sum(len(w.in_flight) for w in self.workers.values()) / max(1, len(self.workers)))

    async def _next_event(self, request: PendingRequest, deadline: float):
        remaining = deadline - time.monotonic()
        try:
            event = await asyncio.wait_for(request.events.get(), max(remaining, 0.001))
        except TimeoutError as error:
            raise EngineTimeout(f"request did not finish within {self.timeout_s:g} s") from error
        if isinstance(event, Exception):
            raise event
        if isinstance(event, JobError):
            if event.kind == "invalid":
                raise InvalidParameter(event.param or "body", event.message)
            raise EngineUnavailable(event.message)
        return event

    # Engine interface -------------------------------------------------------------------
    async def generate_stream(self, request: GenerateInput, logprobs: int | None = None, stream: bool = True,
                              request_id: str | None = None) -> AsyncIterator[object]:
        """Yields PromptInfo, then TokenEvents (when streaming or asked for logprobs) and each
        choice's ChoiceFinished as they happen."""
        deadline = time.monotonic() + self.timeout_s
        job = GenerateJob(request_id or f"gen-{uuid.uuid4().hex}", request.model_id, request.prompt, request.params, logprobs, stream)
        pending = self._submit(job)
        unfinished = len(request.params)
        try:
            while unfinished:
                event = await self._next_event(pending, deadline)
                if isinstance(event, ChoiceFinished):
                    unfinished -= 1
                    self.metrics.tokens_generated.labels(request.model_id).inc(len(event.tokens))
                    if event.first_token_s is not None and event.tokens:
                        self.metrics.time_to_first_token.observe(event.first_token_s, exemplar={"request_id": pending.request_id})
                    if event.per_token_s is not None:
                        self.metrics.inter_token.observe(event.per_token_s)
                yield event
            pending.done = True
        finally:
            self._release(pending)

    async def generate(self, request: GenerateInput, logprobs: int | None = None, request_id: str | None = None) -> GenerateOutput:
        choices: list[Choice | None] = [None] * len(request.params)
        prompt_tokens = 0
        token_logprobs: dict[int, list[TokenEvent]] = {}
        async for event in self.generate_stream(request, logprobs, stream=False, request_id=request_id):
            if isinstance(event, PromptInfo):
                prompt_tokens = event.prompt_tokens
            elif isinstance(event, TokenEvent):
                token_logprobs.setdefault(event.choice, []).append(event)
            elif isinstance(event, ChoiceFinished):
                choices[event.choice] = Choice(event.text, event.tokens, event.finish_reason)
        return GenerateOutput(choices=choices, prompt_tokens=prompt_tokens, token_events=token_logprobs)

    async def submit(self, task: str, request, request_id: str | None = None):
        """One request of a batch task (`app.engine.tasks.BATCH_TASKS`), answered with its result."""
        known = BATCH_TASKS.get(task)
        if known is None or not isinstance(request, known.input_type):
            raise TypeError(f"no batch task {task!r} takes a {type(request).__name__}")
        return await self._single_result(TaskJob(request_id or f"{task}-{uuid.uuid4().hex}", task, request))

    async def _single_result(self, job):
        deadline = time.monotonic() + self.timeout_s
        pending = self._submit(job)
        try:
            while True:
                event = await self._next_event(pending, deadline)
                if isinstance(event, JobResult):
                    pending.done = True
                    return event.result
        finally:
            self._release(pending)

    async def abort(self, request_id: str) -> bool:
        """Stop a request: the engine jobs with this id, and its parts (`ID/1`, `ID/2`, ...: an
        HTTP request that runs several jobs names them so). False when none is in flight."""
        parts = [request for rid, request in self.requests.items()
                 if rid == request_id or rid.startswith(request_id + PART_SEPARATOR)]
        for request in parts:
            self._fail(request, RequestAborted(f"request {request_id!r} was aborted"))
            self._release(request)  # the worker drops its rows and queued jobs at its next step
        return bool(parts)

    async def load_models(self, paths: dict[str, Path], revisions: dict[str, str],
                          precisions: dict[str, str] | None = None) -> dict[str, str]:
        """Make every worker serve `paths` (a reload); returns the models some worker could not
        load, with why. Sequences already running finish on the weights they started with.
        Workers started later (restarts) load the new set."""
        precisions = dict(precisions or {})
        self.worker_configs = [dataclasses.replace(c, model_paths=dict(paths), model_precisions=precisions) for c in self.worker_configs]
        failures: dict[str, str] = {}
        waiting = []
        for handle in list(self.workers.values()):
            handle.config = dataclasses.replace(handle.config, model_paths=dict(paths), model_precisions=precisions)
            if not (handle.ready and handle.alive()):
                continue  # it loads the new set when it (re)starts
            request = PendingRequest(f"reload-{uuid.uuid4().hex}", handle.config.worker_id)
            self.requests[request.request_id] = request
            handle.inbox.put(LoadModels(request.request_id, dict(paths), dict(revisions), precisions))
            waiting.append((handle, request))
        deadline = time.monotonic() + max(self.timeout_s, 300.0)
        for handle, request in waiting:
            try:
                while True:
                    event = await self._next_event(request, deadline)
                    if isinstance(event, ModelsLoaded):
                        handle.failures = dict(event.failures)
                        failures.update(event.failures)
                        break
            except EngineError as error:
                logger.warning("worker %d did not confirm the reload: %s", handle.config.worker_id, error)
            finally:
                request.done = True
                self.requests.pop(request.request_id, None)
        return failures

    def health(self) -> EngineHealth:
        workers = [
            {"id": w.config.worker_id, "device": w.config.device, "alive": w.alive(), "ready": w.ready,
             "in_flight": len(w.in_flight), "live_sequences": w.live_rows, "pid": getattr(w.runner, "pid", None),
             "failed_models": w.failures}
            for w in self.workers.values()
        ]
        ready = bool(workers) and all(w["alive"] and w["ready"] for w in workers)
        detail = "" if ready else "workers are starting or restarting"
        return EngineHealth(ready=ready, workers=workers, detail=detail)
