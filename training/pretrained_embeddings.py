"""Initialise a word model's input embeddings from word2vec-format vectors (the seed's
suggestion: vectors trained on far more text than the corpus carry what it cannot).

Both of word2vec's formats are read: text (a "COUNT DIM" header, then one "word v1 ... vDIM"
line per word) and binary (the same header, then each word, a space and DIM little-endian
float32s). Words of the vocabulary missing from the file keep their random initialisation;
a word missing in its own case falls back to its lower-case vector.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from models.vocab import Vocabulary

logger = logging.getLogger(__name__)

MAX_DIM = 4096


class EmbeddingFileError(ValueError):
    """The vectors file is not in word2vec format or does not fit the model."""


def _header(line: bytes, path: Path) -> tuple[int, int]:
    try:
        count, dim = (int(x) for x in line.split())
    except ValueError as error:
        raise EmbeddingFileError(f"{path}: the first line must be 'COUNT DIM'") from error
    if count < 0 or not 0 < dim <= MAX_DIM:
        raise EmbeddingFileError(f"{path}: implausible header {count} {dim}")
    return count, dim


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.readline()
        sample = handle.read(4096)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as error:
        # A text file cut mid-character fails only in its last bytes.
        return error.start < len(sample) - 4
    return False


def read_word2vec(path: str | Path, wanted: set[str]) -> tuple[int, dict[str, np.ndarray]]:
    """(dimension, vectors of the `wanted` words and of their lower-case forms) from a file."""
    path = Path(path)
    binary = _is_binary(path)
    vectors: dict[str, np.ndarray] = {}
    wanted = wanted | {word.lower() for word in wanted}
    with open(path, "rb") as handle:
        count, dim = _header(handle.readline(), path)
        for index in range(count):
            if binary:
                word_bytes = bytearray()
                while (char := handle.read(1)) != b" ":
                    if not char:
                        raise EmbeddingFileError(f"{path}: ends inside entry {index}")
                    if char != b"\n":
                        word_bytes += char
                raw = handle.read(4 * dim)
                if len(raw) != 4 * dim:
                    raise EmbeddingFileError(f"{path}: ends inside entry {index}")
                word, values = word_bytes.decode("utf-8", errors="replace"), np.frombuffer(raw, dtype="<f4")
            else:
                line = handle.readline()
                if not line:
                    raise EmbeddingFileError(f"{path}: header promises {count} vectors, found {index}")
                parts = line.decode("utf-8", errors="replace").rstrip("\n").split(" ")
                if len(parts) != dim + 1:
                    raise EmbeddingFileError(f"{path}: line {index + 2} has {len(parts) - 1} values, expected {dim}")
                word = parts[0]
                try:
                    values = np.asarray(parts[1:], dtype=np.float32)
                except ValueError as error:
                    raise EmbeddingFileError(f"{path}: line {index + 2} has a value that is not a number") from error
            if word in wanted and word not in vectors:
                if not np.isfinite(values).all():
                    raise EmbeddingFileError(f"{path}: the vector of {word!r} is not finite")
                vectors[word] = values.astype(np.float32)
    return dim, vectors


def initialise_embeddings(embedding: torch.nn.Embedding, vocab: Vocabulary, path: str | Path) -> dict:
    """Copy the file's vectors into `embedding` rows; returns coverage figures for provenance."""
    dim, vectors = read_word2vec(path, set(vocab.tokens))
    if dim != embedding.embedding_dim:
        raise EmbeddingFileError(f"{path} has {dim}-dimensional vectors; pass --embedding-dim {dim}")
    found = 0
    with torch.no_grad():
        for index, token in enumerate(vocab.tokens):
            vector = vectors.get(token)
            if vector is None:
                vector = vectors.get(token.lower())
            if vector is not None:
                embedding.weight[index] = torch.from_numpy(vector)
                found += 1
    coverage = {"file": str(path), "dimension": dim, "words_found": found, "vocabulary": len(vocab)}
    logger.info("initialised %d of %d embeddings from %s", found, len(vocab), path)
    return coverage
