"""The recurrent language model's serving artifact (`models.artifacts` holds what every model
type shares): config.json's architecture and tokenizer, the vocabulary, the weights (a tied
output layer stored once) and the optional spelling model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from models.artifacts import (FORMAT_VERSION, VOCAB_FILE, WEIGHTS_FILE, CheckpointError, load_tokenizer,
                              load_weights, model_revision, read_config, save_weights, write_model_directory)
from models.loaded import LoadedModel
from models.prefix_scoring import runs_as_tree, score_prefix_tree, shares_prefixes
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel, count_parameters
from models.scoring import SequenceScore, score_sequences
from models.spelling import load_spelling
from models.streams import EVAL_BATCH_SIZE, EVAL_BPTT, stream_loss, stream_token_logprobs
from models.text_encoding import TextEncoding
from models.tokenizers import TokenizerConfig
from models.vocab import Vocabulary


@dataclass
class LoadedLanguageModel(LoadedModel, TextEncoding):
    """A language model ready to serve: network, vocabulary, tokenizer and its metadata."""

    model_type: ClassVar[str] = "rnn_lm"
    model: RNNLanguageModel

    def score(self, sequences: list[list[int]], top_logprobs: int = 0) -> list[SequenceScore]:
        # N-best lists share most of their prefixes: run each distinct prefix once (the tree
        # reads only the targets' log-probabilities, so alternatives take the flat pass).
        if not top_logprobs and runs_as_tree(self.model) and shares_prefixes(sequences):
            return score_prefix_tree(self.model, sequences)
        return score_sequences(self.model, sequences, top_logprobs)

    def stream_loss(self, ids, batch_size=EVAL_BATCH_SIZE, bptt=EVAL_BPTT, device="cpu"):
        return stream_loss(self.model, ids, batch_size, bptt, device)

    def stream_token_logprobs(self, ids, bptt=EVAL_BPTT, device="cpu"):
        return stream_token_logprobs(self.model, ids, bptt, device)


def _tied_names(config: LanguageModelConfig) -> frozenset[str]:
    return frozenset({"decoder.weight"}) if config.tie_weights else frozenset()


def save_language_model(
    directory: str | Path,
    model: RNNLanguageModel,
    vocab: Vocabulary,
    tokenizer_config: TokenizerConfig,
    extra: dict[str, Any] | None = None,
    weights_dtype: str = "float32",
    files: dict[str, Path] | None = None,
) -> Path:
    """Write the serving artifact; `extra` adds provenance and metrics to config.json, `files`
    are copied in (the tokenizer's)."""
    if len(vocab) != model.config.vocab_size:
        raise CheckpointError("vocabulary size does not match the model")
    config = {
        "model_type": "rnn_lm",
        "format_version": FORMAT_VERSION,
        "architecture": model.config.to_json(),
        "tokenizer": tokenizer_config.to_json(),
        "weights_dtype": weights_dtype,
        "parameters": count_parameters(model),
        **(extra or {}),
    }
    return write_model_directory(directory, config, vocab,
                                 lambda path: save_weights(model, path, weights_dtype, _tied_names(model.config)), files)


def load_language_model(directory: str | Path, device: str | torch.device = "cpu") -> LoadedLanguageModel:
    directory = Path(directory)
    config = read_config(directory)
    try:
        architecture = LanguageModelConfig.from_json(config["architecture"])
        tokenizer_config = TokenizerConfig.from_json(config.get("tokenizer", {}))
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{directory}: bad config.json ({error})") from error
    vocab = Vocabulary.load(directory / VOCAB_FILE)
    if len(vocab) != architecture.vocab_size:
        raise CheckpointError(f"{directory}: vocab.json has {len(vocab)} tokens, config says {architecture.vocab_size}")
    model = RNNLanguageModel(architecture)
    load_weights(model, directory / WEIGHTS_FILE, _tied_names(architecture))
    model.to(device).eval()
    return LoadedLanguageModel(
        model_id=directory.name,
        model=model,
        vocab=vocab,
        tokenizer=load_tokenizer(directory, tokenizer_config),
        config=config,
        revision=model_revision(directory),
        path=directory,
        spelling=load_spelling(directory),
    )
