"""model_type (config.json) -> loader: one table instead of an if/elif chain."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from models.captioning.captioner import load_captioner
from models.checkpoint import CheckpointError, load_language_model, read_config
from models.ngram_checkpoint import load_ngram_model

LOADERS: dict[str, Callable[[Path, "str | torch.device"], Any]] = {
    "rnn_lm": load_language_model,
    "captioner": load_captioner,
    "ngram": load_ngram_model,
}


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load any known model type from its directory."""
    config = read_config(directory)
    model_type = config.get("model_type")
    if model_type not in LOADERS:
        raise CheckpointError(f"{directory}: unknown model_type {model_type!r}")
    return LOADERS[model_type](Path(directory), device)
