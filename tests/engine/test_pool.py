"""The pool restarts a worker that keeps crashing at start-up with a growing delay, not in a
tight loop."""
import asyncio
from pathlib import Path

from app.engine.lm_tasks import TokenLimits
from app.engine.pool import WorkerPool
from app.engine.worker import WorkerConfig
from app.metrics import Metrics


def test_crash_looping_worker_is_restarted_with_backoff(tmp_path):
    # A negative thread count makes torch raise as the worker starts: it dies every time.
    config = WorkerConfig(0, Path(tmp_path), "cpu", 4, 4, 0.005, TokenLimits(10, 10), threads=-5)

    async def scenario() -> int:
        pool = WorkerPool([config], "process", 8, 5.0, Metrics())
        await pool.start()
        await asyncio.sleep(4.0)
        restarts = pool.restarts
        await pool.stop()
        return restarts

    restarts = asyncio.run(scenario())
    # Each worker fails at once; with 0.5 s, 1 s, 2 s... delays four
    # seconds hold a handful of restarts, where a tight loop would hold dozens.
    assert 1 <= restarts <= 4
