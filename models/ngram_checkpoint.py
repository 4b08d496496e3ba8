"""The n-gram model's serving artifact: config.json (model_type "ngram"), vocab.json and
model.safetensors with its hashed tables (numpy arrays; nothing unpickled)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from safetensors.numpy import load_file, save_file

from models.artifacts import (
    FORMAT_VERSION,
    VOCAB_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_tokenizer,
    model_revision,
    read_config,
    write_model_directory,
)
from models.loaded import LoadedModel
from models.ngram import NGramModel
from models.scoring import SequenceScore, summarise
from models.spelling import load_spelling
from models.streams import EVAL_BATCH_SIZE, EVAL_BPTT
from models.text_encoding import TextEncoding
from models.tokenizers import TokenizerConfig
from models.vocab import Vocabulary


@dataclass
class LoadedNGramModel(LoadedModel, TextEncoding):
    """An n-gram model ready to score (it does not generate)."""

    model_type: ClassVar[str] = "ngram"
    model: NGramModel

    def count_parameters(self) -> int:
        return self.model.num_ngrams  # stored n-grams: the model's size

    def score(self, sequences: list[list[int]]) -> list[SequenceScore]:
        if any(len(s) < 2 for s in sequences):
            raise ValueError("each sequence needs a context token and at least one token to score")
        return [summarise(values.tolist()) for values in self.model.score_sequences(sequences)]

    # The model predicts a stream's tokens (the first is context only) from its own history, so
    # it needs no batches or windows: `batch_size`, `bptt` and `device` are the signature's only.
    def stream_loss(self, ids, batch_size=EVAL_BATCH_SIZE, bptt=EVAL_BPTT, device="cpu"):
        return self.model.stream_loss(ids.numpy())

    def stream_token_logprobs(self, ids, bptt=EVAL_BPTT, device="cpu"):
        return self.model.token_logprobs(ids.numpy(), context=1)


def save_ngram_model(directory: str | Path, model: NGramModel, vocab: Vocabulary, tokenizer_config: TokenizerConfig, extra: dict[str, Any] | None = None) -> Path:
    if len(vocab) != model.vocab_size:
        raise CheckpointError("vocabulary size does not match the model")
    config = {
        "model_type": "ngram",
        "format_version": FORMAT_VERSION,
        "order": model.order,
        "vocab_size": model.vocab_size,
        "tokenizer": tokenizer_config.to_json(),
        "parameters": model.num_ngrams,
        **(extra or {}),
    }
    return write_model_directory(directory, config, vocab, lambda path: save_file(model.to_tensors(), str(path)))


def load_ngram_model(directory: str | Path, device: Any = "cpu") -> LoadedNGramModel:
    """Load from `directory`; `device` is accepted for the registry's signature (numpy, CPU)."""
    directory = Path(directory)
    config = read_config(directory)
    try:
        order, vocab_size = int(config["order"]), int(config["vocab_size"])
        tokenizer_config = TokenizerConfig.from_json(config.get("tokenizer", {}))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory}: bad config.json ({error})") from error
    vocab = Vocabulary.load(directory / VOCAB_FILE)
    if len(vocab) != vocab_size:
        raise CheckpointError(f"{directory}: vocab.json has {len(vocab)} tokens, config says {vocab_size}")
    try:
        model = NGramModel.from_tensors(load_file(str(directory / WEIGHTS_FILE)), order, vocab_size)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{directory}: {error}") from error
    return LoadedNGramModel(directory.name, model, vocab, load_tokenizer(directory, tokenizer_config), config, model_revision(directory), directory,
                            spelling=load_spelling(directory))
