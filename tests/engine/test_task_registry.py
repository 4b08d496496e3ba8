"""A batch task is one entry: a toy task registered in BATCH_TASKS alone (its input type,
runner, batching and the capability a model needs) is batched by the worker and answered
through `WorkerPool.submit`, with no other engine code touched."""
import asyncio
from dataclasses import dataclass

import pytest

from app.engine.base import BatchSettings
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import JobResult
from app.engine.pool import WorkerPool
from app.engine.tasks import BATCH_TASKS, BatchTask
from app.engine.worker import WorkerConfig
from app.metrics import Metrics
from app.settings import Settings
from models.registry import SCORE

MODEL = "tiny-word-lstm"


@dataclass
class CountInput:
    model_id: str
    texts: list[str]


BATCHES: list[list[str]] = []  # the request ids of each batch the runner ran


def run_token_counts(models: dict, jobs: list, emit, config) -> list[int]:
    """Each text's token count under its model's tokenizer."""
    BATCHES.append([job.request_id for job in jobs])
    for job in jobs:
        loaded = models[job.model_id]
        emit(JobResult(job.request_id, [len(loaded.encode_text(text).tokens) for text in job.request.texts]))
    return [sum(len(job.request.texts) for job in jobs)]


def test_a_task_registered_in_one_place_is_batched_and_served(monkeypatch, tiny_models_dir):
    task = BatchTask("token-count", CountInput, run_token_counts, BatchSettings(max_items=4, max_wait_s=0.5), requires=SCORE,
                     count_items=lambda request: len(request.texts))
    monkeypatch.setitem(BATCH_TASKS, task.name, task)
    batching = Settings().batching(BATCH_TASKS)
    assert batching["token-count"] == task.default_batching  # no setting names it: its own default
    config = WorkerConfig(0, {MODEL: tiny_models_dir / MODEL}, "cpu", 16, batching, TokenLimits(100, 100))
    metrics = Metrics()

    async def scenario():
        pool = WorkerPool([config], "thread", 8, 20.0, metrics)
        await pool.start()
        try:
            assert await pool.wait_ready(60)
            answers = await asyncio.gather(
                pool.submit("token-count", CountInput(MODEL, ["the cat sat", "a"]), request_id="first"),
                pool.submit("token-count", CountInput(MODEL, ["the old man ran to the river"]), request_id="second"))
            with pytest.raises(TypeError, match="token-count"):
                await pool.submit("token-count", ["not", "its", "input"])
            return answers
        finally:
            await pool.stop()

    assert asyncio.run(scenario()) == [[3, 1], [7]]
    # The two requests (3 items, under max_items) waited for each other and ran as one batch.
    assert sorted(map(sorted, BATCHES)) == [["first", "second"]]
