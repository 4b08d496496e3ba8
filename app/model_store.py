"""The catalogue of models the service offers: every sub-directory of the models directory
holding a config.json. Each is loaded once at start-up to prove it is sound (workers load
their own copies onto their devices); the catalogue keeps only what the HTTP layer needs:
ids, types, revisions, metrics and a default per type."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ApiError
from models.checkpoint import CONFIG_FILE, CheckpointError
from models.registry import load_model

logger = logging.getLogger(__name__)

# model_type in config.json -> the type shown in /v1/models
PUBLIC_TYPES = {"rnn_lm": "language_model", "captioner": "captioner", "ngram": "ngram"}


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    model_type: str
    public_type: str
    level: str | None
    revision: str
    parameters: int
    metrics: dict[str, Any]
    path: Path
    extra: dict[str, Any]  # type-specific facts the HTTP layer needs (a captioner's image size)


def describe(loaded: Any) -> ModelInfo:
    return ModelInfo(
        model_id=loaded.model_id,
        model_type=loaded.model_type,
        public_type=PUBLIC_TYPES.get(loaded.model_type, loaded.model_type),
        level=getattr(loaded, "level", None),
        revision=loaded.revision,
        parameters=loaded.parameters,
        metrics=loaded.metrics,
        path=loaded.path,
        extra={"image_size": loaded.image_size} if hasattr(loaded, "image_size") else {},
    )


@dataclass
class ModelStore:
    models: dict[str, ModelInfo] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # public type -> model id
    failures: dict[str, str] = field(default_factory=dict)  # model id -> why it did not load

    @classmethod
    def discover(cls, models_dir: Path, preferred_defaults: dict[str, str | None]) -> "ModelStore":
        store = cls()
        if not models_dir.is_dir():
            logger.warning("models directory %s does not exist", models_dir)
            return store
        for directory in sorted(p for p in models_dir.iterdir() if (p / CONFIG_FILE).is_file()):
            try:
                store.models[directory.name] = describe(load_model(directory, "cpu"))
                logger.info("found model %s in %s", directory.name, directory)
            except (CheckpointError, OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
                store.failures[directory.name] = str(error)
                logger.error("could not load model %s: %s", directory.name, error)
        for model_id, info in store.models.items():
            preferred = preferred_defaults.get(info.public_type)
            if preferred == model_id or (info.public_type not in store.defaults and preferred not in store.models):
                store.defaults[info.public_type] = model_id
        return store

    def resolve(self, model_id: str | None, public_type: str, param: str = "model", also: tuple[str, ...] = ()) -> ModelInfo:
        """The model a request names (or the default of `public_type`); 404 if there is none.
        `also` lists other types the endpoint accepts when named explicitly."""
        if model_id is None:
            if public_type not in self.defaults:
                raise ApiError(404, f"no {public_type.replace('_', ' ')} is loaded", param)
            return self.models[self.defaults[public_type]]
        info = self.models.get(model_id)
        if info is None:
            raise ApiError(404, f"model {model_id!r} not found", param)
        if info.public_type != public_type and info.public_type not in also:
            accepted = " or ".join((public_type, *also)).replace("_", " ")
            raise ApiError(422, f"model {model_id!r} is a {info.public_type.replace('_', ' ')}, not a {accepted}", param)
        return info
