"""DELETE /v1/requests/{request_id}: stop a request in flight (by the id its client sent as
x-request-id, or the one returned in that header)."""
from __future__ import annotations

from fastapi import APIRouter

from app.dependencies import EngineDep
from app.errors import ApiError

router = APIRouter(tags=["requests"])


@router.delete("/v1/requests/{request_id}")
async def abort_request(request_id: str, engine: EngineDep) -> dict:
    """The request (and every engine job it runs) stops: a generation frees its rows at the next
    step, queued work is dropped, and its client gets an error. 404 when none is in flight."""
    if not await engine.abort(request_id):
        raise ApiError(404, f"no request {request_id!r} is in flight", "request_id")
    return {"id": request_id, "aborted": True}
