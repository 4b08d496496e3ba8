"""The pool restarts a worker that keeps crashing at start-up with a growing delay, not in a
tight loop."""
import asyncio

from app.engine.lm_tasks import TokenLimits
from app.engine.pool import WorkerPool
from app.engine.worker import WorkerConfig
from app.metrics import Metrics


def test_crash_looping_worker_is_restarted_with_backoff(tmp_path):
    # A negative thread count makes torch raise as the worker starts: it dies every time.
    config = WorkerConfig(0, {}, "cpu", 4, 4, 0.005, TokenLimits(10, 10), threads=-5)

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
