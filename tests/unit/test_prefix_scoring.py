"""Scoring through a prefix tree equals scoring each sequence on its own, per token, for every
cell and head, on random n-best lists."""
import random

import pytest
import torch

from models.prefix_scoring import distinct_prefixes, score_prefix_tree, shares_prefixes
from models.quantization import to_int8
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import score_sequences


def random_nbest(rng: random.Random, vocab_size: int, lists: int, size: int) -> list[list[int]]:
    """N-best-like lists: a base sentence per list, each hypothesis a variant that shares a
    prefix with it (a changed word, a cut, an extension), all starting from token 3."""
    sequences = []
    for _ in range(lists):
        base = [3] + [rng.randrange(4, vocab_size) for _ in range(rng.randint(3, 12))]
        for _ in range(size):
            variant = list(base)
            cut = rng.randint(1, len(variant))
            variant = variant[:cut] + [rng.randrange(4, vocab_size) for _ in range(rng.randint(0, 4))]
            sequences.append(variant if len(variant) >= 2 else base)
    return sequences


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("cell, head", [("lstm", "linear"), ("gru", "linear"), ("rnn", "linear"), ("lstm", "adaptive")])
def test_the_tree_gives_flat_scoring_per_token(cell, head, precision):
    torch.manual_seed(0)
    config = LanguageModelConfig(vocab_size=60, embedding_dim=16, hidden_dim=24, num_layers=2, cell=cell, dropout=0.0,
                                 head=head, adaptive_cutoffs=(20,) if head == "adaptive" else ())
    model = RNNLanguageModel(config).eval()
    if precision == "int8":
        model = to_int8(model)
    rng = random.Random(7)
    for _ in range(5):
        sequences = random_nbest(rng, 60, lists=rng.randint(1, 4), size=rng.randint(2, 12))
        flat, tree = score_sequences(model, sequences), score_prefix_tree(model, sequences)
        for f, t in zip(flat, tree):
            assert t.token_logprobs == pytest.approx(f.token_logprobs, abs=1e-5)
            assert t.num_tokens == f.num_tokens


def test_sharing_is_detected_and_counted():
    nbest = [[3, 5, 6, 7], [3, 5, 6, 8], [3, 5, 9]]
    assert distinct_prefixes(nbest) == 3  # [3], [3 5] and [3 5 6]: the nodes that predict a token
    long_list = [[3, 5, 6, 7, 8, 9, 10, 11] + [12 + i] for i in range(100)]  # 100 hypotheses, one shared prefix
    assert shares_prefixes(long_list)
    assert not shares_prefixes(nbest * 3)  # too small to pay for the tree's steps
    assert not shares_prefixes([[3] + list(range(10 * i, 10 * i + 9)) for i in range(100)])
