"""Sampling from an adaptive head cluster by cluster gives what the full distribution gives:
the same token for the same random number (seeded equality), the same frequencies, the same
argmax; and the full distribution is not built."""
import pytest
import torch

from models.next_token import NextTokenScores
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.sampling import BatchSampler, SamplingParams

V, UNK, EOS = 60, 1, 2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LanguageModelConfig(vocab_size=V, embedding_dim=8, hidden_dim=16, num_layers=1, cell="lstm", dropout=0.0,
                                 head="adaptive", adaptive_cutoffs=(20, 40))
    model = RNNLanguageModel(config).eval()
    with torch.no_grad():  # flatten the frequent words, so rows land in the clusters often
        model.adaptive.head.weight[:20] *= 0.1
    return model


def samplers(params):
    return BatchSampler(params, V, UNK, EOS), BatchSampler(params, V, UNK, EOS)


def test_same_seed_same_token_as_the_full_distribution(model):
    hidden = torch.randn(64, 16)
    params = [SamplingParams(seed=i, max_tokens=100, min_tokens=5) for i in range(64)]
    by_cluster, full = samplers(params)
    generated = torch.arange(64) % 8  # some rows still hold back the end token
    same = total = 0
    landed_in_clusters = 0
    for _ in range(30):
        scores = NextTokenScores(model, hidden)
        a = by_cluster.choose(scores, generated)
        assert scores._logits is None  # the full distribution was never built
        b = full.choose(model.output_logits(hidden), generated)
        same += int((a == b).sum())
        total += len(a)
        landed_in_clusters += int((a >= 20).sum())
        assert not bool(((a == EOS) & (generated < 5)).any()) and not bool((a == UNK).any())
    assert landed_in_clusters > total // 10
    assert same >= total - 2  # a uniform on a boundary may round either way


def test_frequencies_follow_the_model(model):
    hidden = torch.randn(1, 16).repeat(20000, 1)
    params = [SamplingParams(seed=i, allow_unknown=True) for i in range(20000)]
    chosen = BatchSampler(params, V, UNK, EOS).choose(NextTokenScores(model, hidden), torch.ones(20000, dtype=torch.long))
    observed = torch.bincount(chosen, minlength=V).double() / 20000
    with torch.no_grad():
        expected = model.output_logits(hidden[:1]).exp().squeeze(0).double()
    assert float((observed - expected).abs().max()) < 0.012


def test_argmax_reads_a_cluster_only_when_it_could_hold_the_best_word(model):
    hidden = torch.randn(200, 16) * 3
    params = [SamplingParams(strategy="argmax")] * 200
    scores = NextTokenScores(model, hidden)
    chosen = BatchSampler(params, V, UNK, EOS).choose(scores, torch.ones(200, dtype=torch.long))
    full = model.output_logits(hidden)
    full[:, UNK] = -float("inf")
    assert torch.equal(chosen, full.argmax(dim=-1))
    assert bool((chosen >= 20).any()) and bool((chosen < 20).any())


def test_reshaped_distributions_read_the_full_logits(model):
    hidden = torch.randn(4, 16)
    for params in (SamplingParams(temperature=0.7, seed=1), SamplingParams(strategy="top_k", seed=1), SamplingParams(top_p=0.9, seed=1)):
        scores = NextTokenScores(model, hidden)
        BatchSampler([params] * 4, V, UNK, EOS).choose(scores, torch.ones(4, dtype=torch.long))
        assert scores._logits is not None
