"""FastAPI dependencies: the app's services live on app.state (set up by create_app's
lifespan), never in module globals.

They are `async def` although they only read an attribute: FastAPI runs a plain `def`
dependency in its thread pool, and four thread hops per request (each a GIL hand-over) cost
the event loop more than the request's own work once the CPU is shared with the worker.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.cache import ResultCache
from app.engine.base import Engine
from app.model_store import ModelStore
from app.settings import Settings


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
