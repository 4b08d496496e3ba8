"""The pool restarts a worker that keeps crashing at start-up with a growing delay, not in a
tight loop."""
import asyncio

from app.engine.lm_tasks import TokenLimits
from app.engine.pool import WorkerPool
from app.engine.worker import WorkerConfig
from app.metrics import Metrics
from app.engine.tasks import BATCH_TASKS
from app.settings import Settings


def test_crash_looping_worker_is_restarted_with_backoff(tmp_path):
    # A negative thread count makes torch raise as the worker starts: it dies every time.
    config = WorkerConfig(0, {}, "cpu", 4, Settings().batching(BATCH_TASKS), TokenLimits(10, 10), threads=-5)

    async def scenario() -> tuple[int, list[float]]:
        pool = WorkerPool([config], "process", 8, 5.0, Metrics())
        await pool.start()
        delays: list[float] = []
        # Wait for four restarts however slowly processes start on a busy machine, noting the
        # delay each new worker was started after.
        for _ in range(1200):
            backoff = pool.workers[0].crash_backoff_s
            if not delays or backoff != delays[-1]:
                delays.append(backoff)
            if pool.restarts >= 4:
                break
            await asyncio.sleep(0.05)
        restarts = pool.restarts
        await pool.stop()
        return restarts, delays

    restarts, delays = asyncio.run(scenario())
    assert restarts >= 4
    # Each early death doubles the delay before the next start: 0.5 s, 1 s, 2 s...,
    # where a tight loop would restart at once every time.
    assert [d for d in delays if d] [:3] == [0.5, 1.0, 2.0], delays


def test_a_caller_names_its_requests_and_can_abort_them(tiny_models_dir):
    """The caller's request id travels to the worker; `abort` stops the request (its caller
    gets RequestAborted, the worker frees the row) and an id in flight cannot be reused."""
    import pytest

    from app.engine.base import DuplicateRequestId, GenerateInput, RequestAborted, ScoreInput
    from app.main import build_worker_pool
    from app.model_store import discover_models
    from models.sampling import SamplingParams

    settings = Settings(models_dir=tiny_models_dir, serve_shipped_models=False, device="cpu", worker_mode="thread")
    pool = build_worker_pool(settings, discover_models(settings), Metrics())

    async def scenario():
        await pool.start()
        try:
            assert await pool.wait_ready(60)
            long = GenerateInput("tiny-word-lstm", "the cat", [SamplingParams(max_tokens=1000, min_tokens=1000)])
            stream = pool.generate_stream(long, request_id="mine")
            first = await anext(stream)  # the prompt was taken: the request is in flight
            assert first.request_id == "mine"
            with pytest.raises(DuplicateRequestId):
                await pool.submit("score", ScoreInput("tiny-word-lstm", texts=["a"]), request_id="mine")
            assert await pool.abort("mine") is True
            with pytest.raises(RequestAborted):
                async for _ in stream:
                    pass
            assert await pool.abort("mine") is False
            for _ in range(100):  # the worker drops the row at its next step
                if all(w["live_sequences"] == 0 for w in pool.health().workers):
                    break
                await asyncio.sleep(0.05)
            assert all(w["live_sequences"] == 0 and w["in_flight"] == 0 for w in pool.health().workers)
            short = await pool.generate(GenerateInput("tiny-word-lstm", "the cat", [SamplingParams(max_tokens=3)]), request_id="mine")
            assert len(short.choices[0].tokens) == 3  # the id is free again
        finally:
            await pool.stop()

    asyncio.run(scenario())
