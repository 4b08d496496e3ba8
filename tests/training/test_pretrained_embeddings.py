"""word2vec-format vectors (text and binary) initialise a word model's embeddings."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from models.checkpoint import load_language_model
from models.vocab import Vocabulary
from training.pretrained_embeddings import EmbeddingFileError, initialise_embeddings, read_word2vec
from training.train_lm import main as train

VECTORS = {"the": [0.5, -0.25, 1.0, 0.0], "Cat": [1.5, 2.0, -1.0, 0.25], "zebra": [9.0, 9.0, 9.0, 9.0]}


def write_text(path, vectors=VECTORS, dim=4):
    lines = [f"{len(vectors)} {dim}"] + [" ".join([word, *map(str, values)]) for word, values in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_binary(path, vectors=VECTORS, dim=4):
    with open(path, "wb") as handle:
        handle.write(f"{len(vectors)} {dim}\n".encode())
        for word, values in vectors.items():
            handle.write(word.encode() + b" " + struct.pack(f"<{dim}f", *values) + b"\n")
    return path


@pytest.mark.parametrize("writer", [write_text, write_binary])
def test_both_formats_read_the_same_vectors(tmp_path, writer):
    dim, vectors = read_word2vec(writer(tmp_path / "vectors"), {"the", "cat", "dog"})
    assert dim == 4
    assert set(vectors) == {"the"}  # "Cat" is not "cat"; the lower-case fallback is the vocabulary's side
    np.testing.assert_array_equal(vectors["the"], np.float32(VECTORS["the"]))


def test_vocabulary_rows_are_initialised_and_the_rest_untouched(tmp_path):
    vocab = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "the", "Cat", "cat", "dog"])
    embedding = torch.nn.Embedding(len(vocab), 4)
    before = embedding.weight.detach().clone()
    coverage = initialise_embeddings(embedding, vocab, write_binary(tmp_path / "vectors.bin"))
    assert coverage["words_found"] == 2
    assert embedding.weight[vocab.id("the")].tolist() == VECTORS["the"]
    assert embedding.weight[vocab.id("Cat")].tolist() == VECTORS["Cat"]
    torch.testing.assert_close(embedding.weight[vocab.id("dog")], before[vocab.id("dog")])


def test_mismatched_or_broken_files_are_refused(tmp_path):
    vocab = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "the"])
    with pytest.raises(EmbeddingFileError, match="--embedding-dim 4"):
        initialise_embeddings(torch.nn.Embedding(len(vocab), 8), vocab, write_text(tmp_path / "v.txt"))
    (tmp_path / "short.txt").write_text("3 4\nthe 1 2 3 4\n")
    with pytest.raises(EmbeddingFileError, match="promises 3"):
        read_word2vec(tmp_path / "short.txt", {"the"})
    (tmp_path / "ragged.txt").write_text("1 4\nthe 1 2 3\n")
    with pytest.raises(EmbeddingFileError, match="3 values"):
        read_word2vec(tmp_path / "ragged.txt", {"the"})
    (tmp_path / "noheader.txt").write_text("the 1 2 3 4\n")
    with pytest.raises(EmbeddingFileError, match="COUNT DIM"):
        read_word2vec(tmp_path / "noheader.txt", {"the"})


def test_train_lm_starts_from_the_vectors(tmp_path, tiny_corpus):
    vectors = {"cat": [0.1, 0.2, 0.3, 0.4], "river": [-0.4, -0.3, -0.2, -0.1]}
    path = write_text(tmp_path / "tiny.vec", vectors)
    train(["--data", str(tiny_corpus), "--level", "word", "--embedding-dim", "4", "--hidden-dim", "8", "--num-layers", "1",
           "--batch-size", "4", "--bptt", "8", "--epochs", "1", "--max-steps", "1", "--lr", "1e-9", "--weights-dtype", "float32",
           "--pretrained-embeddings", str(path), "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "model"),
           "--no-progress"])
    loaded = load_language_model(tmp_path / "model")
    assert loaded.config["provenance"]["pretrained_embeddings"]["words_found"] == 2
    # One step at a negligible learning rate: the rows are still the file's vectors.
    torch.testing.assert_close(loaded.model.embedding.weight[loaded.vocab.id("cat")], torch.tensor(vectors["cat"]), atol=1e-4, rtol=0)
