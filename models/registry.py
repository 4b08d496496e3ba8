"""The model types, one entry each: what config.json's ``model_type`` loads with, the type the
HTTP API shows, the tasks a model of that type can do and the facts of its own the catalogue
keeps. Adding a type is one entry here. How a model scores (a text, a token stream) is its
loaded class's: what the entry's `load` returns (`models.text_encoding.TextEncoding`).

`inspect_model` reads what a catalogue needs from a model directory's files (config.json,
vocab.json, the weights' checksums) without building the network, and settles the precision
the model is served at (`models.quantization.resolve_precision`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from models.artifacts import VOCAB_FILE, CheckpointError, model_revision, read_config
from models.captioning.captioner import captioner_facts, load_captioner
from models.checkpoint import load_language_model
from models.interpolation import Tokenization
from models.ngram_checkpoint import load_ngram_model
from models.quantization import FP32, precision_revision, resolve_precision, to_int8
from models.tokenizers import LEVELS
from models.vocab import Vocabulary

logger = logging.getLogger(__name__)
# config.json's entry for the precision a model is served at when the service's setting is
# "auto" (`training.cli.add_export_options`: --serving-precision).
SERVING_PRECISION = "serving_precision"

# What a model can be asked to do; the engine has one task entry per name.
GENERATE, SCORE, CAPTION = "generate", "score", "caption"


def no_extra_facts(config: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ModelType:
    name: str  # config.json "model_type"
    public_type: str  # the type /v1/models shows
    described_as: str  # how messages name the public type, with its article
    tasks: frozenset[str]
    load: Callable[[Path, "str | torch.device"], Any]
    # config.json -> what the HTTP layer needs of a model of this type beyond every model's facts.
    extra_facts: Callable[[dict[str, Any]], dict[str, Any]] = no_extra_facts
    # Whether its network has an int8 form (`models.quantization.to_int8`).
    quantizable: bool = False


MODEL_TYPES: dict[str, ModelType] = {entry.name: entry for entry in (
    ModelType("rnn_lm", "language_model", "a language model", frozenset({GENERATE, SCORE}), load_language_model,
              quantizable=True),
    ModelType("ngram", "ngram", "an n-gram model", frozenset({SCORE}), load_ngram_model),
    ModelType("captioner", "captioner", "a captioner", frozenset({CAPTION}), load_captioner, captioner_facts,
              quantizable=True),
)}


def model_type(name: str | None, where: object = "model") -> ModelType:
    if name not in MODEL_TYPES:
        raise CheckpointError(f"{where}: unknown model_type {name!r} (known: {', '.join(MODEL_TYPES)})")
    return MODEL_TYPES[name]


def can(model_type_name: str, task: str) -> bool:
    """Whether models of this type do `task`."""
    entry = MODEL_TYPES.get(model_type_name)
    return entry is not None and task in entry.tasks


def is_language_model(model_type_name: str) -> bool:
    """Language models, recurrent or n-gram: anything that scores text."""
    return can(model_type_name, SCORE)


def described_as(public_type: str) -> str:
    """How messages name a public type: 'a language model', 'an n-gram model'."""
    return next(entry.described_as for entry in MODEL_TYPES.values() if entry.public_type == public_type)


def load_model(directory: str | Path, device: str | torch.device = "cpu", precision: str = FP32) -> Any:
    """Load any known model type from its directory, computing in `precision` (int8: its
    recurrent and output layers quantized at load, on the CPU)."""
    entry = model_type(read_config(directory).get("model_type"), directory)
    loaded = entry.load(Path(directory), device)
    if precision != FP32:
        served, why = resolve_precision(precision, None, entry.quantizable, torch.device(device).type == "cpu")
        if why:
            raise CheckpointError(f"{directory}: cannot serve in {precision}: {why}")
        to_int8(loaded.model)
        loaded.precision, loaded.revision = served, precision_revision(loaded.revision, served)
    return loaded


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a model from its files alone: all the HTTP layer needs of it."""

    model_id: str
    model_type: str
    level: str | None
    revision: str
    parameters: int
    metrics: dict[str, Any]
    path: Path
    extra: dict[str, Any]  # type-specific facts the HTTP layer needs (a captioner's image size)
    example_prompt: str | None  # what the playground offers first (config.json "example_prompt")
    tokenization: Tokenization | None  # text-reading models: decides whether two mix per token
    precision: str = FP32  # what the workers compute in (models.quantization.PRECISIONS)

    @property
    def public_type(self) -> str:
        return MODEL_TYPES[self.model_type].public_type

    @property
    def tasks(self) -> frozenset[str]:
        return MODEL_TYPES[self.model_type].tasks


def inspect_model(directory: str | Path, precision: str = "auto", on_cpu: bool = True) -> ModelFacts:
    """A model's facts from config.json, vocab.json and the weights' checksum; raises
    CheckpointError (or OSError, ValueError) for a directory that cannot be a model.
    `precision` is the setting asked for ("auto": config.json's serving_precision); one the
    model cannot be served at (int8 of an n-gram model, or on a GPU) falls back to fp32, logged."""
    directory = Path(directory)
    config = read_config(directory)
    entry = model_type(config.get("model_type"), directory)
    tokenizer = config.get("tokenizer") or {}
    level = tokenization = None
    if SCORE in entry.tasks:  # a language model: it reads text at a tokenizer level
        level = tokenizer.get("level")
        if level is not None and level not in LEVELS:
            raise CheckpointError(f"{directory}: unknown tokenizer level {level!r}")
        vocab = Vocabulary.load(directory / VOCAB_FILE)
        specials = set(vocab.specials.values())
        tokenization = Tokenization(level or "word", tokenizer.get("style", "wikitext"),
                                    frozenset(t for t in vocab.tokens if t not in specials))
    extra = entry.extra_facts(config)
    try:
        parameters = int(config.get("parameters", 0))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{directory}: bad parameters in config.json") from error
    served, why = resolve_precision(precision, config.get(SERVING_PRECISION), entry.quantizable, on_cpu)
    if why:
        logger.warning("model %s is served in %s: %s", directory.name, served, why)
    return ModelFacts(directory.name, entry.name, level, precision_revision(model_revision(directory), served), parameters,
                      dict(config.get("metrics") or {}), directory, extra, config.get("example_prompt"), tokenization, served)
