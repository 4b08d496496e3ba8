"""The Kneser-Ney estimator against a direct transcription of Chen & Goodman's formulas, and
the served back-off form: normalisation, save/load, bad files."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from models.artifacts import CheckpointError
from models.ngram import NGramModel
from models.ngram_checkpoint import load_ngram_model, save_ngram_model
from models.tokenizers import TokenizerConfig
from models.vocab import Vocabulary
from training.kneser_ney import discounts, estimate


def reference_kneser_ney(stream: list[int], vocab_size: int, order: int):
    """Interpolated modified Kneser-Ney written out with dictionaries, one formula per line:
    slow and plain, to check the vectorised estimator against."""
    raw = [Counter(tuple(stream[i : i + k]) for i in range(len(stream) - k + 1)) for k in range(1, order + 1)]
    counts = [None] * order
    counts[order - 1] = raw[order - 1]
    for k in range(order - 1, 0, -1):
        continuation = Counter(gram[1:] for gram in raw[k])  # distinct left extensions
        continuation[tuple(stream[:k])] += 1  # the stream's start is one more left context
        counts[k - 1] = continuation
    d = [discounts(np.array(list(c.values()))) for c in counts]

    def discount(k: int, count: int) -> float:
        return 0.0 if count == 0 else d[k - 1][min(count, 3) - 1]

    by_context = [defaultdict(dict) for _ in range(order)]
    for k in range(1, order + 1):
        for gram, count in counts[k - 1].items():
            by_context[k - 1][gram[:-1]][gram[-1]] = count

    def prob(history: tuple, word: int) -> float:
        if not history:
            followers = by_context[0][()]
            total = sum(followers.values())
            gamma = sum(discount(1, c) for c in followers.values()) / total
            count = followers.get(word, 0)
            return (count - discount(1, count)) / total + gamma / vocab_size
        k = len(history) + 1
        followers = by_context[k - 1].get(history)
        if not followers:
            return prob(history[1:], word)
        total = sum(followers.values())
        gamma = sum(discount(k, c) for c in followers.values()) / total
        count = followers.get(word, 0)
        return max(count - discount(k, count), 0) / total + gamma * prob(history[1:], word)

    return prob


def random_stream(length: int = 4000, seed: int = 0) -> np.ndarray:
    """A stream with structure (a Markov chain) so the higher orders matter."""
    rng = np.random.default_rng(seed)
    stream = [0]
    for _ in range(length - 1):
        stream.append(int((stream[-1] * 3 + rng.integers(0, 4)) % 14))
    return np.array(stream)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_matches_the_reference_formulas(order):
    stream = random_stream()
    model, _ = estimate(stream, vocab_size=16, order=order)  # ids 14 and 15 never occur
    reference = reference_kneser_ney(stream.tolist(), 16, order)
    test = random_stream(300, seed=1)
    test[::37] = 15  # unseen words
    ours = model.token_logprobs(test, context=1)
    expected = [math.log(reference(tuple(test[max(0, i - order + 1) : i].tolist()), int(test[i]))) for i in range(1, len(test))]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("order", [2, 3, 5])
def test_every_conditional_distribution_sums_to_one(order):
    model, _ = estimate(random_stream(), vocab_size=16, order=order)
    for history in ([0], [3, 9], [9, 1, 3, 10], [15, 15], [14, 2, 7, 7]):
        assert np.exp(model.logprob_table(history)).sum() == pytest.approx(1.0, abs=1e-5)


def second_order_stream(length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stream = [0, 1]
    for _ in range(length - 2):
        stream.append(int(((stream[-2] % 2) * 5 + stream[-1] * 3 + rng.integers(0, 2)) % 14))
    return np.array(stream)


def test_each_order_uses_the_context_it_sees():
    # Each word depends on the two before it: bigrams help, trigrams help more.
    stream, held_out = second_order_stream(6000, 0), second_order_stream(2000, 5)
    losses = [-estimate(stream, 16, order)[0].token_logprobs(held_out).mean() for order in (1, 2, 3)]
    assert losses[0] > losses[1] + 0.3 and losses[1] > losses[2] + 0.3


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        estimate(np.array([1, 2]), 4, order=3)
    with pytest.raises(ValueError):
        estimate(np.array([1, 2, 3, 9, 1, 2]), 4, order=2)
    model, _ = estimate(random_stream(), 16, 2)
    with pytest.raises(ValueError):
        model.token_logprobs(np.array([0, 16]))


def test_save_load_round_trip_and_bad_files(tmp_path):
    tokens = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"w{i}" for i in range(12)]
    vocab = Vocabulary(tokens)
    model, summary = estimate(random_stream(), len(vocab), 3)
    save_ngram_model(tmp_path / "kn3", model, vocab, TokenizerConfig(level="word", style="plain", start_token="<eos>", end_token="<eos>"),
                     {"metrics": {"valid_ppl": 1.0}})
    loaded = load_ngram_model(tmp_path / "kn3")
    assert loaded.model_type == "ngram" and loaded.parameters == model.num_ngrams and loaded.metrics == {"valid_ppl": 1.0}
    encoded = loaded.encode_text("w1 w4 w13 w9", add_start=True)
    assert encoded.oov == [False, False, True, False]  # w13 is not in the vocabulary
    [score] = loaded.score([encoded.ids])
    np.testing.assert_allclose(score.token_logprobs, model.token_logprobs(np.array(encoded.ids)), atol=1e-6)

    config = json.loads((tmp_path / "kn3" / "config.json").read_text())
    (tmp_path / "kn3" / "config.json").write_text(json.dumps({**config, "order": 4}))
    with pytest.raises(CheckpointError):
        load_ngram_model(tmp_path / "kn3")
    (tmp_path / "kn3" / "model.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "kn3" / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception):
        load_ngram_model(tmp_path / "kn3")


def test_tables_must_be_sorted():
    model, _ = estimate(random_stream(), 16, 2)
    tensors = model.to_tensors()
    tensors["keys.2"] = tensors["keys.2"][::-1].copy()
    with pytest.raises(ValueError):
        NGramModel.from_tensors(tensors, 2, 16)


def test_batched_distinct_windows_equal_per_sequence_scoring(tiny_ngram_path):
    """An n-best list's shared prefixes are looked up once; the numbers are those of scoring each
    sequence on its own, start-of-sequence histories included."""
    import random

    from models.registry import load_model

    model = load_model(tiny_ngram_path).model
    rng = random.Random(3)
    base = [[rng.randrange(model.vocab_size) for _ in range(rng.randint(1, 9))] for _ in range(6)]
    sequences = [b[: rng.randint(1, len(b))] + [rng.randrange(model.vocab_size) for _ in range(rng.randint(1, 3))]
                 for b in base for _ in range(5)]
    batched = model.score_sequences(sequences)
    for sequence, values in zip(sequences, batched):
        assert values.tolist() == pytest.approx(model.token_logprobs(np.asarray(sequence), context=1).tolist(), abs=1e-9)
