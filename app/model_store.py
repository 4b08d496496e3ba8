"""The models the service serves: every sub-directory of the models directory that holds a
config.json, loaded once at start-up, with a default per model type."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.errors import ApiError
from models.checkpoint import CONFIG_FILE, CheckpointError, load_model

logger = logging.getLogger(__name__)

# model_type in config.json -> the type shown in /v1/models
PUBLIC_TYPES = {"rnn_lm": "language_model", "captioner": "captioner", "ngram": "ngram"}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class ModelStore:
    models: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # public type -> model id
    failures: dict[str, str] = field(default_factory=dict)  # model id -> why it did not load

    @classmethod
    def discover(cls, models_dir: Path, device: torch.device, preferred_defaults: dict[str, str | None]) -> "ModelStore":
        store = cls()
        if not models_dir.is_dir():
            logger.warning("models directory %s does not exist", models_dir)
            return store
        for directory in sorted(p for p in models_dir.iterdir() if (p / CONFIG_FILE).is_file()):
            try:
                store.models[directory.name] = load_model(directory, device)
                logger.info("loaded model %s from %s", directory.name, directory)
            except (CheckpointError, OSError, ValueError, RuntimeError) as error:
                store.failures[directory.name] = str(error)
                logger.error("could not load model %s: %s", directory.name, error)
        for model_id, loaded in store.models.items():
            public = store.public_type(loaded)
            preferred = preferred_defaults.get(public)
            if preferred == model_id or (public not in store.defaults and preferred not in store.models):
                store.defaults[public] = model_id
        return store

    @staticmethod
    def public_type(loaded: Any) -> str:
        return PUBLIC_TYPES.get(loaded.model_type, loaded.model_type)

    def resolve(self, model_id: str | None, public_type: str, param: str = "model") -> Any:
        """The model a request names (or the default of the type); 404 if there is none."""
        if model_id is None:
            if public_type not in self.defaults:
                raise ApiError(404, f"no {public_type.replace('_', ' ')} is loaded", param)
            return self.models[self.defaults[public_type]]
        loaded = self.models.get(model_id)
        if loaded is None:
            raise ApiError(404, f"model {model_id!r} not found", param)
        if self.public_type(loaded) != public_type:
            raise ApiError(422, f"model {model_id!r} is a {self.public_type(loaded)}, not a {public_type}", param)
        return loaded
