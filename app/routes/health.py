"""GET /healthz (the process answers) and GET /readyz (models loaded, workers up)."""
from __future__ import annotations

from fastapi import APIRouter

from app.dependencies import EngineDep, StoreDep
from app.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(store: StoreDep, engine: EngineDep):
    health = engine.health()
    body = {"status": "ready", "models": sorted(store.models), "failed_models": store.failures, "workers": health.workers}
    if not store.models:
        return error_response(503, "no model is loaded", error_type="service_unavailable")
    if not health.ready:
        return error_response(503, health.detail or "workers are not ready", error_type="service_unavailable")
    return body
