"""FastAPI dependencies: the app's services live on app.state (set up by create_app's
lifespan), never in module globals."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.cache import ResultCache
from app.engine.base import Engine
from app.model_store import ModelStore
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_cache(request: Request) -> ResultCache:
    return request.app.state.cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
EngineDep = Annotated[Engine, Depends(get_engine)]
CacheDep = Annotated[ResultCache, Depends(get_cache)]
