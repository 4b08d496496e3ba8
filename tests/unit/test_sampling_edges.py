"""Sampling is total over its parameter space: every value the schemas accept gives a token of
the vocabulary, never a NaN or an index past its end; temperature -> 0 and top_p -> 0 reach the
argmax limit; a row with edge values leaves its batch neighbours' tokens as they are alone."""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.sampling import MAX_TEMPERATURE, SEED_LIMIT, STRATEGIES, BatchSampler, SamplingParams
from tests.conftest import examples

VOCAB = 2540  # not a multiple of the inverse-CDF block, so an index past the end is possible
UNKNOWN, END = 0, 1

temperatures = st.floats(min_value=0.0, max_value=MAX_TEMPERATURE, allow_subnormal=True)
tiny_positive = st.floats(min_value=5e-324, max_value=1e-10, allow_subnormal=True)
top_ps = st.floats(min_value=5e-324, max_value=1.0, allow_subnormal=True, exclude_min=False)
top_ks = st.none() | st.integers(min_value=1, max_value=10**9)
seeds = st.integers(min_value=0, max_value=SEED_LIMIT - 1)


def logits_for(seed: int, rows: int, scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, VOCAB, generator=generator) * scale


ORDINARY = [SamplingParams(seed=11), SamplingParams(strategy="top_k", top_k=5, temperature=0.7, seed=12),
            SamplingParams(strategy="argmax"), SamplingParams(top_p=0.9, temperature=1.3, seed=13)]


def choose(params: list[SamplingParams], logits: torch.Tensor, generated: int = 0) -> list[int]:
    sampler = BatchSampler(params, VOCAB, UNKNOWN, END)
    return sampler.choose(logits, torch.full((len(params),), generated)).tolist()


def allowed_argmax(row: torch.Tensor, min_tokens: int, generated: int) -> int:
    row = row.clone()
    row[UNKNOWN] = -float("inf")
    if generated < min_tokens:
        row[END] = -float("inf")
    return int(row.argmax())


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(STRATEGIES), temperature=temperatures, top_p=top_ps, top_k=top_ks, seed=seeds,
       logit_seed=st.integers(0, 2**31), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]), min_tokens=st.integers(0, 2))
def test_any_accepted_parameters_choose_a_valid_token_and_leave_neighbours_alone(
        strategy, temperature, top_p, top_k, seed, logit_seed, scale, min_tokens):
    edge = SamplingParams(strategy=strategy, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                          min_tokens=min_tokens, max_tokens=max(4, min_tokens))
    logits = logits_for(logit_seed, len(ORDINARY) + 1, scale)
    tokens = choose([*ORDINARY, edge], logits)
    token = tokens[-1]
    assert 0 <= token < VOCAB
    assert token != UNKNOWN
    assert not (min_tokens > 0 and token == END)
    # The ordinary rows choose as they do without the edge row beside them.
    assert tokens[:-1] == choose(ORDINARY, logits[: len(ORDINARY)])


@settings(max_examples=examples(200), deadline=None)
@given(strategy=st.sampled_from(["top_k", "multinomial"]), temperature=tiny_positive, seed=seeds,
       logit_seed=st.integers(0, 2**31), scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_temperature_towards_zero_is_the_argmax_limit(strategy, temperature, seed, logit_seed, scale):
    logits = logits_for(logit_seed, 3, scale)
    params = [SamplingParams(strategy=strategy, temperature=temperature, seed=(seed + row) % SEED_LIMIT) for row in range(3)]
    assert choose(params, logits) == [allowed_argmax(row, 0, 0) for row in logits]


@settings(max_examples=examples(200), deadline=None)
@given(top_p=tiny_positive, temperature=st.floats(min_value=1e-3, max_value=MAX_TEMPERATURE), seed=seeds,
       logit_seed=st.integers(0, 2**31))
def test_top_p_towards_zero_keeps_the_most_probable_token(top_p, temperature, seed, logit_seed):
    logits = logits_for(logit_seed, 2, 5.0)
    params = [SamplingParams(top_p=top_p, temperature=temperature, seed=(seed + row) % SEED_LIMIT) for row in range(2)]
    assert choose(params, logits) == [allowed_argmax(row, 0, 0) for row in logits]


@settings(max_examples=examples(100), deadline=None)
@given(temperature=tiny_positive, seed=seeds, logit_seed=st.integers(0, 2**31))
def test_a_banned_argmax_falls_to_the_best_allowed_token(temperature, seed, logit_seed):
    """The unknown token and a held-back end token are the most probable: a near-zero
    temperature leaves all the mass on them, and the choice is the best token allowed."""
    logits = logits_for(logit_seed, 2, 1.0)
    logits[:, UNKNOWN] = 50.0
    logits[:, END] = 40.0
    params = [SamplingParams(temperature=temperature, seed=seed, min_tokens=1, max_tokens=4),
              SamplingParams(strategy="top_k", top_k=1, temperature=temperature, seed=seed, min_tokens=1, max_tokens=4)]
    assert choose(params, logits) == [allowed_argmax(row, 1, 0) for row in logits]


@settings(max_examples=examples(50), deadline=None)
@given(k=st.integers(1, 50), seed=seeds, logit_seed=st.integers(0, 2**31))
def test_the_largest_temperature_samples_inside_top_k(k, seed, logit_seed):
    logits = logits_for(logit_seed, 1, 5.0)
    token = choose([SamplingParams(strategy="top_k", top_k=k, temperature=MAX_TEMPERATURE, seed=seed)], logits)[0]
    assert token in set(logits[0].topk(k).indices.tolist())


def test_non_finite_logits_never_choose_outside_the_vocabulary():
    """A model whose output holds NaN or +inf for a row (a diverged model) still yields a token
    id the vocabulary has, for every strategy."""
    logits = logits_for(3, 3, 1.0)
    logits[0] = float("nan")
    logits[1, 7] = float("inf")
    for strategy in STRATEGIES:
        params = [SamplingParams(strategy=strategy, seed=row, temperature=0.5) for row in range(3)]
        assert all(0 <= token < VOCAB for token in choose(params, logits))
