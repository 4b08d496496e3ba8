import math

import pytest
import torch

from models.sampling import BatchSampler, InvalidParameter, SamplingParams, inverse_cdf

V, UNK, EOS = 10, 1, 3


def sampler(*params: SamplingParams) -> BatchSampler:
    return BatchSampler(list(params), V, UNK, EOS)


def logits_favouring(token: int, batch: int = 1) -> torch.Tensor:
    logits = torch.linspace(0, 1, V).repeat(batch, 1)
    logits[:, token] = 5.0
    return logits


def generated(*counts: int) -> torch.Tensor:
    return torch.tensor(counts)


def test_argmax_picks_the_most_probable_token():
    chosen = sampler(SamplingParams(strategy="argmax")).choose(logits_favouring(7), generated(0))
    assert chosen.tolist() == [7]


def test_temperature_zero_is_argmax():
    params = SamplingParams(strategy="multinomial", temperature=0)
    assert params.strategy == "argmax" and params.deterministic


def test_top_k_never_leaves_the_top_k():
    logits = torch.randn(1, V)
    candidates = logits.clone()
    candidates[0, UNK] = -math.inf  # <unk> is banned before the top k are taken
    allowed = set(candidates[0].topk(3).indices.tolist())
    s = sampler(SamplingParams(strategy="top_k", top_k=3, seed=0))
    picks = {int(s.choose(logits, generated(1))[0]) for _ in range(300)}
    assert picks <= allowed and len(picks) > 1


def test_top_p_keeps_the_nucleus():
    logits = torch.tensor([[0.0, -9, 0, 0, 5, 4.5, -9, -9, -9, -9]])
    s = sampler(SamplingParams(strategy="multinomial", top_p=0.6, seed=1))
    picks = {int(s.choose(logits, generated(1))[0]) for _ in range(200)}
    assert picks == {4}


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    logits = torch.zeros(1, V)
    def draw(seed):
        s = sampler(SamplingParams(strategy="multinomial", seed=seed, allow_unknown=True))
        return [int(s.choose(logits, generated(1))[0]) for _ in range(20)]
    assert draw(5) == draw(5)
    assert draw(5) != draw(6)


def test_seeded_row_gives_the_same_tokens_alone_or_in_a_batch():
    logits = torch.randn(3, V)
    alone = sampler(SamplingParams(seed=42))
    batch = sampler(SamplingParams(seed=1), SamplingParams(seed=42), SamplingParams(strategy="argmax"))
    for _ in range(10):
        assert int(alone.choose(logits[1:2], generated(1))[0]) == int(batch.choose(logits, generated(1, 1, 1))[1])


def test_unknown_is_never_sampled_unless_allowed():
    logits = logits_favouring(UNK)
    banned = sampler(SamplingParams(strategy="multinomial", seed=0))
    assert all(int(banned.choose(logits, generated(1))[0]) != UNK for _ in range(200))
    assert int(sampler(SamplingParams(strategy="argmax")).choose(logits, generated(1))[0]) != UNK
    allowed = sampler(SamplingParams(strategy="argmax", allow_unknown=True))
    assert int(allowed.choose(logits, generated(1))[0]) == UNK


def test_min_tokens_holds_back_the_end_token():
    s = sampler(SamplingParams(strategy="argmax", min_tokens=2, max_tokens=5))
    assert int(s.choose(logits_favouring(EOS), generated(0))[0]) != EOS
    assert int(s.choose(logits_favouring(EOS), generated(1))[0]) != EOS
    assert int(s.choose(logits_favouring(EOS), generated(2))[0]) == EOS


def test_filter_and_concatenate_keep_each_rows_generator():
    logits = torch.randn(2, V)
    a, b = SamplingParams(seed=3), SamplingParams(seed=4)
    reference = sampler(b)
    expected = [int(reference.choose(logits[1:], generated(1))[0]) for _ in range(5)]
    both = sampler(a).concatenate(sampler(b))
    only_b = both.filter([1])
    assert [int(only_b.choose(logits[1:], generated(1))[0]) for _ in range(5)] == expected


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"strategy": "nucleus"}, "strategy"),
        ({"strategy": "beam", "beam_size": 0}, "beam_size"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"min_tokens": 10, "max_tokens": 5}, "min_tokens"),
        ({"seed": -1}, "seed"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, param):
    with pytest.raises(InvalidParameter) as error:
        SamplingParams(**kwargs)
    assert error.value.param == param


def test_unseeded_sampling_is_not_deterministic():
    assert not SamplingParams(strategy="top_k").deterministic
    assert SamplingParams(strategy="top_k", seed=1).deterministic


def test_sampling_follows_the_distribution():
    probabilities = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05])
    logits = probabilities.clamp_min(1e-30).log().repeat(4000, 1)
    s = BatchSampler([SamplingParams(strategy="multinomial", seed=i, allow_unknown=True) for i in range(4000)], 5, 1, 3)
    counts = torch.bincount(s.choose(logits, torch.ones(4000, dtype=torch.long)), minlength=5).double() / 4000
    assert counts[1] == 0  # a zero-probability token is never drawn
    assert torch.allclose(counts, probabilities.double(), atol=0.03)


def test_counter_uniforms_are_uniform_and_depend_on_seed_and_counter():
    from models.sampling import counter_uniforms

    seeds = torch.arange(20000, dtype=torch.long)
    values = counter_uniforms(seeds, torch.zeros_like(seeds))
    assert 0 <= float(values.min()) and float(values.max()) < 1
    assert abs(float(values.mean()) - 0.5) < 0.01
    assert torch.histc(values.float(), bins=10, min=0, max=1).min() > 1800
    assert not torch.equal(values, counter_uniforms(seeds, torch.ones_like(seeds)))


@pytest.mark.parametrize("vocab", [5, 256, 1000, 33280])
def test_two_level_inverse_cdf_equals_the_full_table(vocab):
    """The block-wise search picks the token the whole float64 cumulative table picks, and
    never a token of zero weight (a banned one), even at uniforms next to 1."""
    generator = torch.Generator().manual_seed(vocab)
    weights = torch.rand(16, vocab, generator=generator) ** 4
    weights[:, ::7] = 0.0  # banned tokens, including the last block's
    weights[:, -1] = 0.0
    uniforms = torch.rand(16, generator=generator, dtype=torch.float64)
    uniforms[0], uniforms[1] = 0.0, 1.0 - 2.0**-53
    cumulative = weights.double().cumsum(dim=-1)
    expected = torch.searchsorted(cumulative, (uniforms.unsqueeze(1) * cumulative[:, -1:]), right=True).squeeze(1)
    chosen = inverse_cdf(weights, uniforms)
    assert bool((weights[torch.arange(16), chosen] > 0).all())
    # Rounding may move a target that sits on a boundary by one token; nothing else differs.
    assert int((chosen != expected.clamp(max=vocab - 1)).sum()) <= 1


def test_beam_search_is_a_decoding_parameter_variant():
    """Beam search is described by SamplingParams like the sampling strategies (deterministic,
    sampling knobs dropped), and a batch sampler refuses it: it is a search over sequences."""
    from models.sampling import BEAM, InvalidParameter, choice_params

    (beam,) = choice_params(1, None, strategy=BEAM, beam_size=4, temperature=0.0, top_k=7, max_tokens=20)
    assert beam.strategy == BEAM and beam.beam_size == 4 and beam.deterministic
    assert beam.top_k is None and beam.temperature == 1.0
    with pytest.raises(InvalidParameter, match="beam_size"):
        SamplingParams(strategy=BEAM, beam_size=0)


def test_neighbouring_seeds_share_no_choices():
    """Choice 0 is the request's seed (n = 1 samples with exactly it); the other choices' seeds
    are mixed from (seed, index), so seed 1's choices and seed 2's are different streams."""
    from models.sampling import SEED_LIMIT, choice_seeds

    assert choice_seeds(None, 3) == [None, None, None]
    for seed in (0, 1, 2, 12345, SEED_LIMIT - 1):
        seeds = choice_seeds(seed, 8)
        assert seeds[0] == seed and len(set(seeds)) == 8
        assert all(0 <= s < SEED_LIMIT for s in seeds)
        assert not set(seeds) & set(choice_seeds((seed + 1) % SEED_LIMIT, 8))
    assert choice_seeds(7, 3) == choice_seeds(7, 5)[:3]  # more choices never change the first ones
