"""The prompt-state cache: its lookups and budget, and the continuous batcher starting rows from
it (repeated prompts, a request's choices, a conversation's next turn), each generating what it
would alone."""
import pytest
import torch

from app.engine import prompt_cache
from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import ChoiceFinished, GenerateJob
from app.engine.prompt_cache import PromptStateCache
from models.checkpoint import load_language_model
from models.generation import generate
from models.sampling import SamplingParams

LIMITS = TokenLimits(max_prompt_tokens=512, max_score_tokens=512)
MB = 2**20


def state(value: float, layers: int = 2, width: int = 4) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    value = float(value)
    return (torch.full((layers, 1, width), value), torch.full((layers, 1, width), -value)), torch.full((1, width), value)


def test_the_longest_cached_prefix_is_found():
    cache = PromptStateCache(MB)
    cache.put([1, 2], *state(2))
    cache.put([1, 2, 3, 4], *state(4))
    cache.put([9], *state(9))
    assert cache.longest_prefix([1, 2, 3, 4, 5]).length == 4
    assert cache.longest_prefix([1, 2, 3, 4]).hidden[0, 0] == 4  # the whole prompt counts
    assert cache.longest_prefix([1, 2, 3]).length == 2
    assert cache.longest_prefix([2, 1]) is None
    assert cache.longest_prefix([1]) is None


def test_entries_are_copies_and_the_budget_evicts_the_least_recently_used():
    states, hidden = state(1.0)
    one_entry = PromptStateCache(10**9)
    one_entry.put([1], states, hidden)
    size = one_entry.bytes
    states[0].fill_(7.0)  # the running batch moves on; the entry must not
    assert one_entry.longest_prefix([1]).state[0].max() == 1.0

    cache = PromptStateCache(2 * size)
    cache.put([1], *state(1))
    cache.put([2], *state(2))
    assert cache.longest_prefix([1]) is not None  # [1] is now the most recently used
    cache.put([3], *state(3))
    assert cache.longest_prefix([2]) is None and cache.longest_prefix([1]) is not None and len(cache) == 2
    assert cache.bytes == 2 * size

    PromptStateCache(size - 1).put([1], *state(1))  # larger than the whole budget: not kept
    off = PromptStateCache(0)
    off.put([1], *state(1))
    assert len(off) == 0 and off.longest_prefix([1]) is None


def test_a_hash_collision_is_a_miss_not_a_wrong_state(monkeypatch):
    monkeypatch.setattr(prompt_cache, "prefix_keys", lambda ids: [0] * len(ids))
    cache = PromptStateCache(MB)
    cache.put([5, 6], *state(1))
    assert cache.longest_prefix([7, 8]) is None
    assert cache.longest_prefix([5, 6]).length == 2


@pytest.fixture(scope="module")
def loaded(tiny_model_path):
    return load_language_model(tiny_model_path)


def solo(loaded, prompt: str, params: SamplingParams):
    ids = loaded.encode_text(prompt, add_start=True).ids
    return generate(loaded.model, loaded.vocab, loaded.tokenizer, [ids], [params])[0]


def run(batcher: ContinuousBatcher, jobs: list[GenerateJob], steps_between: int = 0) -> dict[tuple[str, int], ChoiceFinished]:
    events: list = []
    for job in jobs:
        batcher.submit(job, events.append)
        for _ in range(steps_between):
            batcher.step(events.append)
    for _ in range(1000):
        if not batcher.busy:
            return {(e.request_id, e.choice): e for e in events if isinstance(e, ChoiceFinished)}
        batcher.step(events.append)
    raise AssertionError("batcher did not finish")


PARAMS = [SamplingParams(strategy="argmax", max_tokens=9),
          SamplingParams(strategy="multinomial", seed=3, max_tokens=12),
          SamplingParams(strategy="top_k", top_k=4, temperature=0.7, seed=11, max_tokens=10)]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.strategy)
def test_a_repeated_prompt_reads_nothing_and_generates_the_same(loaded, params):
    batcher = ContinuousBatcher(loaded, 8, LIMITS, prompt_cache_bytes=MB)
    prompt = "my friend looked at the"
    length = len(loaded.encode_text(prompt, add_start=True).ids)
    first = run(batcher, [GenerateJob("first", loaded.model_id, prompt, [params])])
    assert batcher.take_prompt_tokens() == {"cache": 0, "model": length}
    again = run(batcher, [GenerateJob("again", loaded.model_id, prompt, [params])])
    assert batcher.take_prompt_tokens() == {"cache": length, "model": 0}
    assert first["first", 0].tokens == again["again", 0].tokens == solo(loaded, prompt, params).tokens


def test_a_requests_choices_read_their_prompt_once(loaded):
    batcher = ContinuousBatcher(loaded, 8, LIMITS, prompt_cache_bytes=MB)
    prompt = "the old man"
    choices = [SamplingParams(strategy="multinomial", seed=seed, max_tokens=10) for seed in (1, 2, 3)]
    finished = run(batcher, [GenerateJob("n3", loaded.model_id, prompt, choices)])
    assert batcher.take_prompt_tokens() == {"cache": 0, "model": len(loaded.encode_text(prompt, add_start=True).ids)}
    for choice, params in enumerate(choices):
        assert finished["n3", choice].tokens == solo(loaded, prompt, params).tokens


def test_a_conversations_next_turn_reads_only_what_is_new(loaded):
    """The state a finished answer stops at serves a next prompt made of the last prompt, the
    answer and more: only the new words are read, and the result is the same as reading it all."""
    batcher = ContinuousBatcher(loaded, 8, LIMITS, prompt_cache_bytes=MB)
    turn = SamplingParams(strategy="argmax", max_tokens=8, min_tokens=8)
    first = run(batcher, [GenerateJob("turn1", loaded.model_id, "the cat", [turn])])["turn1", 0]
    first_ids = loaded.encode_text("the cat", add_start=True).ids
    follow_up = "the cat" + first.text + " and the dog"
    ids = loaded.encode_text(follow_up, add_start=True).ids
    assert ids[: len(first_ids) + 8] == first_ids + loaded.vocab.encode(first.tokens)  # the text round-trips
    batcher.take_prompt_tokens()
    second = run(batcher, [GenerateJob("turn2", loaded.model_id, follow_up, [turn])])["turn2", 0]
    # The answer's state had read every token but the last chosen one.
    assert batcher.take_prompt_tokens() == {"cache": len(first_ids) + 7, "model": len(ids) - len(first_ids) - 7}
    assert second.tokens == solo(loaded, follow_up, turn).tokens


def test_prompts_read_through_running_steps_are_cached_too(loaded):
    """A short prompt fed through a running batch's steps is cached once read; rows starting
    from the cache, from part of it (the rest prefilled from the cached state, next to a prompt
    read from the start) and from nothing share the batch, each as it would be alone."""
    batcher = ContinuousBatcher(loaded, 8, LIMITS, prompt_cache_bytes=MB)
    runner = SamplingParams(strategy="argmax", max_tokens=80, min_tokens=80)
    short = "a small child walked"
    longer = short + " " + " ".join(["to the house of the old man ."] * 3)  # a rest past the in-step limit
    params = SamplingParams(strategy="multinomial", seed=5, max_tokens=10)
    jobs = [GenerateJob("runner", loaded.model_id, "the cat", [runner]), GenerateJob("short", loaded.model_id, short, [params])]
    events: list = []
    for job in jobs:
        batcher.submit(job, events.append)
        batcher.step(events.append)
    short_ids = loaded.encode_text(short, add_start=True).ids
    # "the cat" prefilled, the short prompt fed
    assert batcher.take_prompt_tokens()["model"] == len(loaded.encode_text("the cat", add_start=True).ids) + len(short_ids)
    for _ in range(len(short_ids)):
        batcher.step(events.append)
    assert batcher.prompt_cache.longest_prefix(short_ids).length == len(short_ids)
    batcher.take_prompt_tokens()
    finished = run(batcher, [GenerateJob("again", loaded.model_id, short, [params]), GenerateJob("longer", loaded.model_id, longer, [params]),
                             GenerateJob("fresh", loaded.model_id, "my friend looked at the", [params])])
    counts = batcher.take_prompt_tokens()
    assert counts["cache"] == 2 * len(short_ids)
    assert counts["model"] == len(loaded.encode_text(longer, add_start=True).ids) - len(short_ids) + len(loaded.encode_text("my friend looked at the", add_start=True).ids)
    assert finished["again", 0].tokens == solo(loaded, short, params).tokens
    assert finished["longer", 0].tokens == solo(loaded, longer, params).tokens
    assert finished["fresh", 0].tokens == solo(loaded, "my friend looked at the", params).tokens
    assert finished["runner", 0].tokens == solo(loaded, "the cat", runner).tokens


def test_without_a_budget_nothing_is_cached(loaded):
    batcher = ContinuousBatcher(loaded, 8, LIMITS, prompt_cache_bytes=0)
    params = SamplingParams(strategy="argmax", max_tokens=5)
    run(batcher, [GenerateJob("a", loaded.model_id, "the cat", [params]), GenerateJob("b", loaded.model_id, "the cat", [params])])
    assert batcher.take_prompt_tokens()["cache"] == 0 and len(batcher.prompt_cache) == 0
