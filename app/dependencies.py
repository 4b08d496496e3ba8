"""FastAPI dependencies: the app's services live on app.state (set up by create_app's
lifespan), never in module globals.

They are `async def` although they only read an attribute: FastAPI runs a plain `def`
dependency in its thread pool, and four thread hops per request (each a GIL hand-over) cost
the event loop more than the request's own work once the CPU is shared with the worker.
"""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from app.cache import ResultCache
from app.engine.base import Engine
from app.model_store import ModelStore
from app.observability import request_id_var
from app.settings import Settings


async def get_request_id() -> str:
    """This request's id: the client's x-request-id when it sent a valid one, else the one the
    observability middleware made. The engine, the worker's log lines, the metrics' exemplars,
    the response body's id and the x-request-id response header all carry it, and
    DELETE /v1/requests/{id} aborts it."""
    return request_id_var.get() or uuid.uuid4().hex


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_cache(request: Request) -> ResultCache:
    return request.app.state.cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
EngineDep = Annotated[Engine, Depends(get_engine)]
CacheDep = Annotated[ResultCache, Depends(get_cache)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
