"""The catalogue of models the service offers: every sub-directory holding a config.json in
the model directories (the user's, then the shipped ones), except hidden ones (an export still
being written or replaced, `models.artifacts.staged_model_directory`), described from its files
(`models.registry.inspect_model`: nothing is built on the CPU a second time). A directory that
cannot be a model is skipped and reported; one the workers then fail to load is dropped the
same way (`drop_failed`), and the rest serve. The catalogue keeps only what the HTTP layer
needs: ids, types, tasks, revisions, precisions, metrics and a default per type (and why it is
the default). Each model's precision is settled here (the settings, its config.json, the
devices) and the workers load it at that precision."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from app.engine.pool import plan_devices
from app.errors import ApiError
from models.artifacts import model_directories_in
from models.registry import CAPTION, GENERATE, SCORE, ModelFacts, described_as, inspect_model

logger = logging.getLogger(__name__)

# The type whose default serves a task when a request names no model.
DEFAULT_TYPE = {GENERATE: "language_model", SCORE: "language_model", CAPTION: "captioner"}
# The setting that chooses a type's default. No setting chooses an n-gram model: a request that
# names no model never gets one.
DEFAULT_SETTINGS = {"language_model": "RNNSERVE_DEFAULT_LANGUAGE_MODEL", "captioner": "RNNSERVE_DEFAULT_CAPTIONER"}


def type_name(public_type: str, article: bool = True) -> str:
    """'a language model', 'an n-gram model' (or without the article)."""
    name = described_as(public_type)
    return name if article else name.split(" ", 1)[1]


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
        for directory in model_directories_in(models_dir):
            if directory.name in found:
                logger.warning("model %s in %s is hidden by the one in %s", directory.name, directory.parent, found[directory.name].parent)
                continue
            found[directory.name] = directory
    return found


@dataclass
class ModelStore:
    models: dict[str, ModelFacts] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # public type -> model id
    default_reasons: dict[str, str] = field(default_factory=dict)  # public type -> why that one
    failures: dict[str, str] = field(default_factory=dict)  # model id -> why it did not load

    @classmethod
    def discover(cls, models_dirs: list[Path], preferred_defaults: dict[str, str | None],
                 precision_of: Callable[[str], str] = lambda model_id: "auto", on_cpu: bool = True) -> "ModelStore":
        """`precision_of(model id)` is the precision setting that applies to a model; `on_cpu`,
        whether every worker runs on the CPU (int8 needs it)."""
        store = cls()
        directories = model_directories(models_dirs)
        for model_id, directory in directories.items():
            try:
                store.models[model_id] = inspect_model(directory, precision_of(model_id), on_cpu)
                logger.info("found model %s in %s", model_id, directory)
            except Exception as error:  # noqa: BLE001 - whatever a broken directory raises, the others serve
                store.failures[model_id] = f"{type(error).__name__}: {error}"
                logger.error("could not load model %s from %s: %s", model_id, directory, store.failures[model_id])
        store.choose_defaults(preferred_defaults)
        return store

    def drop_failed(self, failures: dict[str, str], preferred_defaults: dict[str, str | None]) -> None:
        """Models the workers could not load leave the catalogue (and its defaults)."""
        for model_id, why in failures.items():
            if self.models.pop(model_id, None) is not None:
                self.failures[model_id] = why
        if failures:
            self.choose_defaults(preferred_defaults)

    def choose_defaults(self, preferred_defaults: dict[str, str | None]) -> None:
        """The default of each type: the configured one when it is loaded, otherwise the first
        of that type by id. Logged, with the reason, and shown in /v1/models."""
        self.defaults.clear()
        self.default_reasons.clear()
        for public_type in sorted({info.public_type for info in self.models.values()}):
            candidates = sorted(m for m, info in self.models.items() if info.public_type == public_type)
            preferred = preferred_defaults.get(public_type)
            setting = DEFAULT_SETTINGS.get(public_type)
            first = f"the first {type_name(public_type, article=False)} by id"
            if preferred in candidates:
                self.defaults[public_type], reason = preferred, f"named by {setting}"
            elif preferred:
                self.defaults[public_type] = candidates[0]
                reason = f"{setting}={preferred} is not loaded; {first}"
            elif setting:
                self.defaults[public_type], reason = candidates[0], f"{first} ({setting} is not set)"
            else:
                self.defaults[public_type], reason = candidates[0], f"{first}; no setting chooses it"
            self.default_reasons[public_type] = reason
            logger.info("default %s: %s (%s)", type_name(public_type, article=False), self.defaults[public_type], reason)

    def paths(self) -> dict[str, Path]:
        """What the workers load: every model that loaded here."""
        return {model_id: info.path for model_id, info in self.models.items()}

    def precisions(self) -> dict[str, str]:
        """What the workers compute each model in."""
        return {model_id: info.precision for model_id, info in self.models.items()}

    def resolve(self, model_id: str | None, task: str, param: str = "model") -> ModelFacts:
        """The model a request names for `task` (or the default of the task's type); 404 if
        there is none, 422 if it cannot do the task."""
        if model_id is None:
            public_type = DEFAULT_TYPE[task]
            if public_type not in self.defaults:
                raise ApiError(404, f"no {type_name(public_type, article=False)} is loaded", param)
            return self.models[self.defaults[public_type]]
        info = self.models.get(model_id)
        if info is None:
            raise ApiError(404, f"model {model_id!r} not found", param)
        if task not in info.tasks:
            able = sorted({m.public_type for m in self.models.values() if task in m.tasks} or {DEFAULT_TYPE[task]})
            raise ApiError(422, f"model {model_id!r} is {type_name(info.public_type)}, which cannot {task}; "
                                f"name {' or '.join(type_name(t) for t in able)}", param)
        return info


def default_preferences(settings) -> dict[str, str | None]:
    return {"language_model": settings.default_language_model, "captioner": settings.default_captioner}


def discover_models(settings) -> ModelStore:
    """The catalogue of the directories `settings` names."""
    on_cpu = all(device == "cpu" for device in plan_devices(settings.device, 1))
    return ModelStore.discover(settings.model_directories(), default_preferences(settings), settings.precision_of, on_cpu)
