"""The application factory. Run with:

    uvicorn --factory app.main:create_app

Settings come from the environment (RNNSERVE_*); tests pass their own.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.body_limit import BodySizeLimitMiddleware
from app.cache import InProcessLRU, ResultCache
from app.engine.in_process import InProcessEngine
from app.engine.lm_tasks import TokenLimits
from app.errors import install_error_handlers
from app.model_store import ModelStore, resolve_device
from app.routes import generate, health, models, score
from app.schemas import ErrorBody
from app.settings import Settings

logger = logging.getLogger(__name__)

ERROR_RESPONSES = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 422, 429, 503, 504)}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        device = resolve_device(settings.device)
        store = ModelStore.discover(settings.models_dir, device, {"language_model": settings.default_language_model})
        engine = InProcessEngine(
            store, TokenLimits(settings.max_prompt_tokens, settings.max_score_tokens), settings.request_timeout_s
        )
        await engine.start()
        app.state.settings, app.state.store, app.state.engine = settings, store, engine
        app.state.cache = ResultCache(InProcessLRU(settings.cache_max_entries))
        logger.info("serving %d model(s) on %s: %s", len(store.models), device, ", ".join(store.models) or "none")
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="rnnserve",
        version="0.1.0",
        description="Text generation, sentence scoring and image captioning with recurrent networks.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, limit_for_path=lambda path: settings.max_body_bytes)
    for router in (generate.router, score.router, models.router, health.router):
        app.include_router(router)
    return app
