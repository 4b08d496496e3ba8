"""The continuous batcher against one-at-a-time generation (golden tests)."""
import pytest
import torch

from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import ChoiceFinished, GenerateJob, TokenEvent
from models.generation import generate
from models.registry import load_model
from models.sampling import SamplingParams

LIMITS = TokenLimits(max_prompt_tokens=512, max_score_tokens=512)
PROMPTS = ["the cat", "a small child walked", "my friend looked at the", "the old man"]


@pytest.fixture(scope="module", params=["fp32", "int8"])
def loaded(tiny_model_path, request):
    """Every golden test at every precision (int8: models.quantization)."""
    return load_model(tiny_model_path, "cpu", request.param)


def solo(loaded, prompt: str, params: SamplingParams) -> list[str]:
    ids = loaded.encode_text(prompt).ids
    return generate(loaded.model, loaded.vocab, loaded.tokenizer, [ids], [params])[0].tokens


def run_until_done(batcher: ContinuousBatcher, events: list, max_steps: int = 500) -> None:
    for _ in range(max_steps):
        if not batcher.busy:
            return
        batcher.step(events.append)
    raise AssertionError("batcher did not finish")


def tokens_of(events: list, request_id: str) -> list[str]:
    (finished,) = [e for e in events if isinstance(e, ChoiceFinished) and e.request_id == request_id]
    return finished.tokens


PARAM_SETS = {
    "argmax": lambda i: SamplingParams(strategy="argmax", max_tokens=15 + i),
    "multinomial": lambda i: SamplingParams(strategy="multinomial", seed=100 + i, max_tokens=15),
    "top_k": lambda i: SamplingParams(strategy="top_k", top_k=3, temperature=0.8, seed=7 * i, max_tokens=12),
}


@pytest.mark.parametrize("kind", sorted(PARAM_SETS))
def test_batched_equals_one_at_a_time(loaded, kind):
    batcher = ContinuousBatcher(loaded, max_batch_size=64, limits=LIMITS)
    events: list = []
    for i, prompt in enumerate(PROMPTS):
        batcher.submit(GenerateJob(f"r{i}", loaded.model_id, prompt, [PARAM_SETS[kind](i)]), events.append)
    run_until_done(batcher, events)
    for i, prompt in enumerate(PROMPTS):
        assert tokens_of(events, f"r{i}") == solo(loaded, prompt, PARAM_SETS[kind](i))


def test_requests_join_a_running_batch(loaded):
    batcher = ContinuousBatcher(loaded, max_batch_size=64, limits=LIMITS)
    events: list = []
    first = SamplingParams(strategy="multinomial", seed=1, max_tokens=30, min_tokens=30)
    batcher.submit(GenerateJob("early", loaded.model_id, PROMPTS[0], [first]), events.append)
    for _ in range(5):
        batcher.step(events.append)
    late = SamplingParams(strategy="multinomial", seed=2, max_tokens=10)
    batcher.submit(GenerateJob("late", loaded.model_id, PROMPTS[1], [late]), events.append)
    sizes = []
    while batcher.busy:
        sizes.append(batcher.step(events.append))
    assert 2 in sizes  # they really shared steps
    assert tokens_of(events, "early") == solo(loaded, PROMPTS[0], first)
    assert tokens_of(events, "late") == solo(loaded, PROMPTS[1], late)


@pytest.mark.parametrize("kind", sorted(PARAM_SETS))
def test_prompts_fed_through_running_steps_give_the_same_tokens(loaded, kind):
    """Short prompts that join a running batch are read one token per shared step, long ones
    prefilled; staggered arrivals, each equal to generating alone."""
    batcher = ContinuousBatcher(loaded, max_batch_size=64, limits=LIMITS)
    events: list = []
    runner = SamplingParams(strategy="argmax", max_tokens=60, min_tokens=60)
    batcher.submit(GenerateJob("runner", loaded.model_id, PROMPTS[0], [runner]), events.append)
    long_prompt = " ".join(["the cat sat on the mat ."] * 4)  # past the in-step limit
    arrivals = PROMPTS[1:] + [long_prompt]
    for i, prompt in enumerate(arrivals):
        for _ in range(i + 1):
            batcher.step(events.append)
        batcher.submit(GenerateJob(f"late{i}", loaded.model_id, prompt, [PARAM_SETS[kind](i)]), events.append)
    run_until_done(batcher, events)
    assert tokens_of(events, "runner") == solo(loaded, PROMPTS[0], runner)
    for i, prompt in enumerate(arrivals):
        assert tokens_of(events, f"late{i}") == solo(loaded, prompt, PARAM_SETS[kind](i)), prompt


def test_batch_size_cap_queues_the_rest(loaded):
    batcher = ContinuousBatcher(loaded, max_batch_size=2, limits=LIMITS)
    events: list = []
    for i in range(5):
        batcher.submit(GenerateJob(f"r{i}", loaded.model_id, "the cat", [SamplingParams(strategy="argmax", max_tokens=4)]), events.append)
    sizes = []
    while batcher.busy:
        sizes.append(batcher.step(events.append))
    assert max(sizes) == 2
    assert sum(isinstance(e, ChoiceFinished) for e in events) == 5


def test_abort_frees_the_slot_at_the_next_step(loaded):
    batcher = ContinuousBatcher(loaded, max_batch_size=8, limits=LIMITS)
    events: list = []
    long = SamplingParams(strategy="argmax", max_tokens=200, min_tokens=200)
    batcher.submit(GenerateJob("a", loaded.model_id, "the cat", [long]), events.append)
    batcher.submit(GenerateJob("b", loaded.model_id, "the dog", [long]), events.append)
    batcher.step(events.append)
    assert len(batcher.rows) == 2
    batcher.abort("a")
    batcher.step(events.append)
    assert [row.request_id for row in batcher.rows] == ["b"]
    assert not any(isinstance(e, ChoiceFinished) and e.request_id == "a" for e in events)


def test_streaming_rows_report_every_token(loaded):
    batcher = ContinuousBatcher(loaded, max_batch_size=8, limits=LIMITS)
    events: list = []
    params = SamplingParams(strategy="argmax", max_tokens=12)
    batcher.submit(GenerateJob("s", loaded.model_id, "the cat", [params], stream=True), events.append)
    batcher.submit(GenerateJob("q", loaded.model_id, "the cat", [params]), events.append)
    run_until_done(batcher, events)
    streamed = [e for e in events if isinstance(e, TokenEvent)]
    assert {e.request_id for e in streamed} == {"s"}
    assert [e.token for e in streamed] == tokens_of(events, "s") == tokens_of(events, "q")
    assert "".join(e.text for e in streamed) == next(e.text for e in events if isinstance(e, ChoiceFinished) and e.request_id == "s")


def test_n_choices_and_logprobs(loaded):
    batcher = ContinuousBatcher(loaded, max_batch_size=8, limits=LIMITS)
    events: list = []
    params = [SamplingParams(strategy="multinomial", seed=s, max_tokens=5) for s in (1, 2, 3)]
    batcher.submit(GenerateJob("r", loaded.model_id, "the cat", params, logprobs=2), events.append)
    run_until_done(batcher, events)
    token_events = [e for e in events if isinstance(e, TokenEvent)]
    assert {e.choice for e in token_events} == {0, 1, 2}
    for event in token_events:
        assert event.logprob <= 0 and len(event.top_logprobs) == 2
        assert max(event.top_logprobs.values()) >= event.logprob - 1e-6
    # the logprob is the unmodified model distribution's
    ids = loaded.encode_text("the cat").ids
    logits, _ = loaded.model(torch.tensor([ids]))
    first = next(e for e in token_events if e.choice == 0)
    expected = logits[0, -1].log_softmax(-1)[loaded.vocab.id(first.token)].item()
    assert first.logprob == pytest.approx(expected, abs=1e-4)


def test_language_models_refuse_beam_search(loaded):
    events: list = []
    batcher = ContinuousBatcher(loaded, 4, TokenLimits(100, 100))
    batcher.submit(GenerateJob("beam", "tiny-word-lstm", "the cat", [SamplingParams(strategy="beam", beam_size=3)]), events.append)
    assert [type(e).__name__ for e in events] == ["JobError"] and events[0].param == "strategy"
    assert not batcher.busy


def test_a_stream_joining_a_running_batch_gets_its_first_token_at_the_next_step(loaded):
    """A streamed newcomer is prefilled at once (its first token after one step); a request
    that waits for its whole answer reads its prompt through the shared steps instead. Both
    generate what they would alone."""
    batcher = ContinuousBatcher(loaded, max_batch_size=8, limits=LIMITS)
    events: list = []
    running = SamplingParams(strategy="argmax", max_tokens=60, min_tokens=60)
    batcher.submit(GenerateJob("running", loaded.model_id, "the cat", [running]), events.append)
    batcher.step(events.append)
    params = SamplingParams(strategy="argmax", max_tokens=6)
    prompt = "my friend looked at the"
    batcher.submit(GenerateJob("stream", loaded.model_id, prompt, [params], stream=True), events.append)
    batcher.submit(GenerateJob("whole", loaded.model_id, prompt, [params]), events.append)
    batcher.step(events.append)
    assert [e.request_id for e in events if isinstance(e, TokenEvent)] == ["stream"]
    (whole,) = [row for row in batcher.rows if row.request_id == "whole"]
    assert whole.prompt_left == len(loaded.encode_text(prompt).ids) - 1  # one prompt token read per step
    run_until_done(batcher, events)
    assert tokens_of(events, "stream") == tokens_of(events, "whole") == solo(loaded, prompt, params)
