"""One bad row never takes the batch down: a fault injected into one request of a running batch
(while choosing, detokenizing or advancing, while joining, in a score or caption batch) fails
that request alone with a clear error; every other request finishes with what it would have
produced alone, and the worker goes on serving."""
import logging
import queue

import pytest

from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.base import ScoreInput
from app.engine.messages import ChoiceFinished, GenerateJob, JobError, JobResult, TaskJob, Shutdown
from app.engine.tasks import BATCH_TASKS, DynamicBatch
from app.engine.worker import WorkerConfig, WorkerLoop
from app.settings import Settings
from models.checkpoint import load_language_model
from models.generation import GenerationBatch, generate
from models.sampling import BatchSampler, SamplingParams

LIMITS = TokenLimits(max_prompt_tokens=512, max_score_tokens=512)
PROMPTS = ["the cat", "a small child walked", "my friend looked at the", "the old man"]
POISON_SEED = 666


class InjectedFault(RuntimeError):
    pass


@pytest.fixture(scope="module")
def loaded(tiny_model_path):
    return load_language_model(tiny_model_path)


def params(index: int) -> SamplingParams:
    seed = POISON_SEED if index == 1 else 100 + index
    return SamplingParams(strategy="multinomial", seed=seed, max_tokens=12, min_tokens=12)


def solo(loaded, prompt: str, sampling: SamplingParams) -> list[str]:
    return generate(loaded.model, loaded.vocab, loaded.tokenizer, [loaded.encode_text(prompt).ids], [sampling])[0].tokens


def run_batch(loaded, events: list) -> None:
    batcher = ContinuousBatcher(loaded, max_batch_size=64, limits=LIMITS)
    for index, prompt in enumerate(PROMPTS):
        batcher.submit(GenerateJob(f"r{index}", loaded.model_id, prompt, [params(index)]), events.append)
    for _ in range(200):
        if not batcher.busy:
            return
        batcher.step(events.append)
    raise AssertionError("the batcher did not finish")


def assert_only_the_poisoned_request_failed(loaded, events: list, caplog) -> None:
    errors = [e for e in events if isinstance(e, JobError)]
    assert [e.request_id for e in errors] == ["r1"]
    assert errors[0].kind == "failed" and "InjectedFault" in errors[0].message and "r1" in errors[0].message
    assert any("r1" in record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR)
    finished = {e.request_id: e.tokens for e in events if isinstance(e, ChoiceFinished)}
    assert "r1" not in finished
    for index in (0, 2, 3):
        assert finished[f"r{index}"] == solo(loaded, PROMPTS[index], params(index))


def poisoned(sampler: BatchSampler) -> bool:
    return any(p.seed == POISON_SEED for p in sampler.params)


def test_a_fault_while_choosing_fails_only_its_request(loaded, monkeypatch, caplog):
    choose = BatchSampler.choose

    def faulty(self, scores, generated, active=None):
        if poisoned(self) and int(generated.max()) >= 3:
            raise InjectedFault("sampling blew up")
        return choose(self, scores, generated, active)

    monkeypatch.setattr(BatchSampler, "choose", faulty)
    events: list = []
    run_batch(loaded, events)
    assert_only_the_poisoned_request_failed(loaded, events, caplog)


def test_a_fault_while_advancing_fails_only_its_request(loaded, monkeypatch, caplog):
    advance = GenerationBatch.advance
    steps = {"count": 0}

    def faulty(self, tokens):
        if poisoned(self.sampler):
            steps["count"] += 1
            if steps["count"] > 4:
                raise InjectedFault("the state went wrong")
        return advance(self, tokens)

    monkeypatch.setattr(GenerationBatch, "advance", faulty)
    events: list = []
    run_batch(loaded, events)
    assert_only_the_poisoned_request_failed(loaded, events, caplog)


def test_a_fault_while_detokenizing_fails_only_its_request(loaded, monkeypatch, caplog):
    from models.generation import CompletionTracker

    add = CompletionTracker.add

    def faulty(self, token_id):
        if self.params.seed == POISON_SEED and len(self.completion.token_ids) >= 5:
            raise InjectedFault("detokenizer failed")
        return add(self, token_id)

    monkeypatch.setattr(CompletionTracker, "add", faulty)
    events: list = []
    run_batch(loaded, events)
    assert_only_the_poisoned_request_failed(loaded, events, caplog)


def test_a_fault_while_joining_fails_only_its_request(loaded, monkeypatch, caplog):
    import app.engine.batcher as batcher_module

    prefill = batcher_module.prefill

    def faulty(model, prompts, state=None):
        if any(len(p) == len(loaded.encode_text(PROMPTS[1]).ids) for p in prompts):
            raise InjectedFault("prefill failed")
        return prefill(model, prompts, state)

    monkeypatch.setattr(batcher_module, "prefill", faulty)
    events: list = []
    run_batch(loaded, events)
    assert_only_the_poisoned_request_failed(loaded, events, caplog)


def score_job(loaded, request_id: str, texts: list[str]) -> TaskJob:
    return TaskJob(request_id, "score", ScoreInput(loaded.model_id, texts=texts))


def test_a_fault_in_a_score_batch_fails_only_its_request(loaded, monkeypatch, caplog):
    models = {loaded.model_id: loaded}
    config = WorkerConfig(0, {}, "cpu", 64, Settings().batching(BATCH_TASKS), LIMITS)
    texts = {"a": ["the cat sat on the mat ."], "b": ["poison ."], "c": ["a bird ran to the river .", "the dog ."]}

    def run(patched: bool) -> list:
        events: list = []
        batch = DynamicBatch(BATCH_TASKS["score"], config.batching["score"])
        for request_id, request_texts in texts.items():
            batch.add(score_job(loaded, request_id, request_texts))
        batch.run(models, events.append, config)
        return events

    clean = {e.request_id: e.result for e in run(False) if isinstance(e, JobResult)}
    score_encoded = type(loaded).score_encoded

    def faulty(self, encoded, *args, **kwargs):
        if any("poison" in item.tokens for item in encoded):
            raise InjectedFault("scoring failed")
        return score_encoded(self, encoded, *args, **kwargs)

    monkeypatch.setattr(type(loaded), "score_encoded", faulty)
    events = run(True)
    assert [e.request_id for e in events if isinstance(e, JobError)] == ["b"]
    results = {e.request_id: e.result for e in events if isinstance(e, JobResult)}
    assert results == {"a": clean["a"], "c": clean["c"]}


def test_the_worker_loop_survives_a_step_that_fails_outside_any_row(loaded, tiny_model_path, monkeypatch, caplog):
    """The last resort: a step raising where no row can be blamed fails the requests it held,
    and the worker goes on to answer the next request."""
    inbox, outbox = queue.Queue(), queue.Queue()
    config = WorkerConfig(0, {loaded.model_id: tiny_model_path}, "cpu", 64, Settings().batching(BATCH_TASKS), LIMITS)
    loop = WorkerLoop(config, inbox, outbox)
    loop.start()
    broken = {"on": True}
    step = ContinuousBatcher.step

    def faulty(self, emit):
        if broken["on"] and self.busy:
            broken["on"] = False
            raise InjectedFault("the step itself failed")
        return step(self, emit)

    monkeypatch.setattr(ContinuousBatcher, "step", faulty)
    inbox.put(GenerateJob("first", loaded.model_id, "the cat", [SamplingParams(strategy="argmax", max_tokens=5)]))
    inbox.put(GenerateJob("second", loaded.model_id, "the dog", [SamplingParams(strategy="argmax", max_tokens=5)]))
    for _ in range(3):
        loop.receive()
        loop.run_due_work()
        loop.flush()
    inbox.put(GenerateJob("after", loaded.model_id, "the cat", [SamplingParams(strategy="argmax", max_tokens=5)]))
    for _ in range(20):
        loop.receive()
        loop.run_due_work()
        loop.flush()
    inbox.put(Shutdown())
    events = []
    while not outbox.empty():
        report = outbox.get()
        events.extend(getattr(report, "events", []))
    failed = {e.request_id for e in events if isinstance(e, JobError)}
    assert failed == {"first", "second"}
    after = [e for e in events if isinstance(e, ChoiceFinished) and e.request_id == "after"]
    assert after and after[0].tokens == solo(loaded, "the cat", SamplingParams(strategy="argmax", max_tokens=5))
