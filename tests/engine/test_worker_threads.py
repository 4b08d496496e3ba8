"""A CPU worker runs a generation step with few live rows on one thread (its second thread would
only spin), and prefills, larger steps and score batches on all of its threads."""
import queue

import pytest
import torch

from app.engine.base import ScoreInput
from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import GenerateJob, TaskJob
from app.engine.tasks import BATCH_TASKS, DynamicBatch
from app.engine.worker import WorkerConfig, WorkerLoop
from app.settings import Settings
from models.sampling import SamplingParams

MODEL = "tiny-word-lstm"


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def steps(monkeypatch) -> list[tuple[int, int, int]]:
    """(live rows, rows waiting to join, torch threads) as each generation step starts."""
    seen: list[tuple[int, int, int]] = []
    original = ContinuousBatcher.step

    def recording(self, emit):
        seen.append((len(self.rows), len(self.waiting), torch.get_num_threads()))
        return original(self, emit)

    monkeypatch.setattr(ContinuousBatcher, "step", recording)
    return seen


def started_worker(tiny_models_dir, single_thread_rows: int) -> WorkerLoop:
    config = WorkerConfig(0, {MODEL: tiny_models_dir / MODEL}, "cpu", 16, Settings().batching(BATCH_TASKS), TokenLimits(100, 100),
                          threads=2, single_thread_rows=single_thread_rows)
    worker = WorkerLoop(config, queue.Queue(), queue.Queue())
    worker.start()
    return worker


def generate_job(request_id: str, choices: int, tokens: int) -> GenerateJob:
    return GenerateJob(request_id, MODEL, "the cat", [SamplingParams(strategy="argmax", max_tokens=tokens)] * choices)


def test_few_live_rows_step_on_one_thread_and_joining_rows_on_all(tiny_models_dir, steps):
    worker = started_worker(tiny_models_dir, single_thread_rows=2)
    worker.dispatch(generate_job("a", choices=2, tokens=6))
    worker.run_due_work()  # two rows join: their prompt is prefilled on every thread
    worker.run_due_work()  # two live rows: one thread
    worker.dispatch(generate_job("b", choices=1, tokens=6))
    worker.run_due_work()  # a row joins
    worker.run_due_work()  # three live rows, more than 2: every thread
    assert steps == [(0, 2, 2), (2, 0, 1), (2, 1, 2), (3, 0, 2)]


def test_the_rule_is_off_at_zero(tiny_models_dir, steps):
    worker = started_worker(tiny_models_dir, single_thread_rows=0)
    worker.dispatch(generate_job("a", choices=1, tokens=4))
    for _ in range(3):
        worker.run_due_work()
    assert [threads for _, _, threads in steps] == [2, 2, 2]


def test_a_score_batch_after_a_one_thread_step_gets_every_thread(tiny_models_dir, steps, monkeypatch):
    batch_threads: list[int] = []
    original = DynamicBatch.run

    def recording(self, models, emit, config):
        batch_threads.append(torch.get_num_threads())
        return original(self, models, emit, config)

    monkeypatch.setattr(DynamicBatch, "run", recording)
    worker = started_worker(tiny_models_dir, single_thread_rows=4)
    worker.dispatch(generate_job("a", choices=1, tokens=8))
    worker.run_due_work()
    worker.run_due_work()
    assert steps[-1] == (1, 0, 1)
    worker.dispatch(TaskJob("s", "score", ScoreInput(MODEL, texts=["the cat sat"])))
    worker.run_due_work(flush_batches=True)
    assert batch_threads and set(batch_threads) == {2}


@pytest.mark.parametrize(("worker_threads", "setting", "expected"), [(2, None, 4), (1, None, 4), (8, None, 0), (8, 3, 3), (2, 0, 0)])
def test_by_default_the_rule_applies_to_workers_of_at_most_two_threads(tiny_models_dir, worker_threads, setting, expected):
    """Measured on two cores only: with more threads a one-row step may be faster on all of
    them, so there the rule is the operator's choice."""
    from app.main import build_worker_pool
    from app.metrics import Metrics
    from app.model_store import discover_models

    settings = Settings(models_dir=tiny_models_dir, serve_shipped_models=False, device="cpu", worker_threads=worker_threads,
                        single_thread_rows=setting)
    pool = build_worker_pool(settings, discover_models(settings), Metrics())
    assert [config.single_thread_rows for config in pool.worker_configs] == [expected]
