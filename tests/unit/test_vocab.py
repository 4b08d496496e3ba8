from collections import Counter

import pytest

from models.vocab import Vocabulary


def test_build_orders_by_frequency_and_keeps_specials(tmp_path):
    vocab = Vocabulary.build(Counter({"b": 5, "a": 5, "c": 1, "d": 3}), max_size=6)
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    assert vocab.id("zzz") == vocab.unk_id
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == vocab.tokens


def test_min_count_and_corpus_unk_is_not_duplicated():
    vocab = Vocabulary.build(["<unk>", "x", "x", "y"], min_count=2)
    assert vocab.tokens.count("<unk>") == 1 and "x" in vocab and "y" not in vocab


def test_rejects_duplicates_and_missing_specials():
    with pytest.raises(ValueError):
        Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"])
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"])
