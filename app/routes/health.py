"""GET /healthz (the process answers), GET /readyz (models loaded, workers up) and
GET /metrics (Prometheus)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.dependencies import EngineDep, StoreDep
from app.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(store: StoreDep, engine: EngineDep):
    health = engine.health()
    if not store.models:
        return error_response(503, "no model is loaded", error_type="service_unavailable")
    if not health.ready:
        return error_response(503, health.detail or "workers are not ready", error_type="service_unavailable")
    return {"status": "ready", "models": sorted(store.models), "failed_models": store.failures, "workers": health.workers}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
