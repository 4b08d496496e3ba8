"""GET /v1/models (OpenAI clients read data[].id) and POST /v1/models/reload (serve new or
retrained models without a restart)."""
from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request

from app.dependencies import EngineDep, SettingsDep, StoreDep
from app.model_store import ModelStore, default_preferences, discover_models
from app.schemas import ModelCard, ModelList, ReloadResponse

router = APIRouter(tags=["models"])
logger = logging.getLogger(__name__)


def model_cards(store: ModelStore) -> list[ModelCard]:
    return [
        ModelCard(
            id=model_id,
            type=info.public_type,
            level=info.level,
            default=store.defaults.get(info.public_type) == model_id,
            revision=info.revision,
            precision=info.precision,
            parameters=info.parameters,
            metrics=info.metrics,
            example_prompt=info.example_prompt,
        )
        for model_id, info in store.models.items()
    ]


@router.get("/v1/models", response_model=ModelList)
async def list_models(store: StoreDep) -> ModelList:
    return ModelList(data=model_cards(store))


# One reload at a time: a second waits for the first instead of racing it.
_RELOAD_LOCK_KEY = "reload_lock"


@router.post("/v1/models/reload", response_model=ReloadResponse)
async def reload_models(request: Request, settings: SettingsDep, store: StoreDep, engine: EngineDep) -> ReloadResponse:
    """Look through the model directories again: new and retrained models are served from the
    next request on, removed ones disappear; requests already running finish on the revision
    they started with. Protected by the API keys like every /v1 route."""
    state = request.app.state
    lock = getattr(state, _RELOAD_LOCK_KEY, None)
    if lock is None:
        lock = asyncio.Lock()
        setattr(state, _RELOAD_LOCK_KEY, lock)
    async with lock:
        old = state.store
        fresh = await asyncio.to_thread(discover_models, settings)
        worker_failures = await engine.load_models(fresh.paths(), {m: i.revision for m, i in fresh.models.items()}, fresh.precisions())
        fresh.drop_failed(worker_failures, default_preferences(settings))
        state.store = fresh
    added = sorted(set(fresh.models) - set(old.models))
    removed = sorted(set(old.models) - set(fresh.models))
    updated = sorted(m for m in set(fresh.models) & set(old.models) if fresh.models[m].revision != old.models[m].revision)
    logger.info("reloaded models: added %s, updated %s, removed %s, failed %s", added, updated, removed, sorted(fresh.failures))
    return ReloadResponse(data=model_cards(fresh), added=added, updated=updated, removed=removed, failed=fresh.failures)
