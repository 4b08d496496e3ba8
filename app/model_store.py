"""The catalogue of models the service offers: every sub-directory holding a config.json in
the model directories (the user's, then the shipped ones). Each is loaded once on the CPU to
prove it is sound; what loads is the list the workers load (`paths`), so a broken model is
skipped and reported in one place and the rest serve. The catalogue keeps only what the HTTP
layer needs: ids, types, revisions, metrics and a default per type (and why it is the default)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ApiError
from models.checkpoint import CONFIG_FILE
from models.interpolation import Tokenization
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
    example_prompt: str | None = None  # what the playground offers first (config.json "example_prompt")
    tokenization: Tokenization | None = None  # language and n-gram models: decides whether they mix per token


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
        example_prompt=loaded.config.get("example_prompt"),
        tokenization=Tokenization.of(loaded) if loaded.model_type in ("rnn_lm", "ngram") else None,
    )



def model_directories(models_dirs: list[Path]) -> dict[str, Path]:
    """model id -> directory over all model directories, in order (the first of two models
    with one id wins)."""
    found: dict[str, Path] = {}
    seen: set[Path] = set()
    for models_dir in models_dirs:
        if models_dir.resolve() in seen:
            continue
        seen.add(models_dir.resolve())
        if not models_dir.is_dir():
            logger.warning("models directory %s does not exist", models_dir)
            continue
        for directory in sorted(p for p in models_dir.iterdir() if (p / CONFIG_FILE).is_file()):
            if directory.name in found:
                logger.warning("model %s in %s is hidden by the one in %s", directory.name, directory.parent, found[directory.name].parent)
                continue
            found[directory.name] = directory
    return found


@dataclass
class ModelStore:
    models: dict[str, ModelInfo] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # public type -> model id
    default_reasons: dict[str, str] = field(default_factory=dict)  # public type -> why that one
    failures: dict[str, str] = field(default_factory=dict)  # model id -> why it did not load

    @classmethod
    def discover(cls, models_dirs: list[Path], preferred_defaults: dict[str, str | None]) -> "ModelStore":
        store = cls()
        directories = model_directories(models_dirs)
        for model_id, directory in directories.items():
            try:
                store.models[model_id] = describe(load_model(directory, "cpu"))
                logger.info("found model %s in %s", model_id, directory)
            except Exception as error:  # noqa: BLE001 - whatever a broken directory raises, the others serve
                store.failures[model_id] = f"{type(error).__name__}: {error}"
                logger.error("could not load model %s from %s: %s", model_id, directory, store.failures[model_id])
        store.choose_defaults(preferred_defaults)
        return store

    def choose_defaults(self, preferred_defaults: dict[str, str | None]) -> None:
        """The default of each type: the configured one when it is loaded, otherwise the first
        of that type by id. Logged, with the reason, and shown in /v1/models."""
        self.defaults.clear()
        self.default_reasons.clear()
        for public_type in sorted({info.public_type for info in self.models.values()}):
            candidates = sorted(m for m, info in self.models.items() if info.public_type == public_type)
            preferred = preferred_defaults.get(public_type)
            setting = f"RNNSERVE_DEFAULT_{public_type.upper()}"
            if preferred in candidates:
                self.defaults[public_type], reason = preferred, f"named by {setting}"
            elif preferred:
                self.defaults[public_type] = candidates[0]
                reason = f"{setting}={preferred} is not loaded; the first {public_type.replace('_', ' ')} by id"
            else:
                self.defaults[public_type], reason = candidates[0], f"the first {public_type.replace('_', ' ')} by id ({setting} is not set)"
            self.default_reasons[public_type] = reason
            logger.info("default %s: %s (%s)", public_type.replace("_", " "), self.defaults[public_type], reason)

    def paths(self) -> dict[str, Path]:
        """What the workers load: every model that loaded here."""
        return {model_id: info.path for model_id, info in self.models.items()}

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


def default_preferences(settings) -> dict[str, str | None]:
    return {"language_model": settings.default_language_model, "captioner": settings.default_captioner}


def discover_models(settings) -> ModelStore:
    """The catalogue of the directories `settings` names."""
    return ModelStore.discover(settings.model_directories(), default_preferences(settings))
