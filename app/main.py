"""The application factory. Run with:

    uvicorn --factory app.main:create_app

Settings come from the environment (RNNSERVE_*); tests pass their own, and may pass an
`engine_factory` to put another engine behind the same interface.
"""
from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from app.access import require_access
from app.body_limit import BodySizeLimitMiddleware
from app.cache import InProcessLRU, RedisCache, ResultCache
from app.disconnect import CancelOnDisconnectMiddleware
from app.engine.base import Engine
from app.engine.pool import WorkerPool, plan_devices
from app.engine.tasks import BATCH_TASKS
from app.engine.worker import SMALL_STEP_ROWS, WorkerConfig
from app.errors import install_error_handlers
from app.limits import RequestLimits
from app.metrics import Metrics
from app.model_store import ModelStore, default_preferences, discover_models
from app.observability import ObservabilityMiddleware, configure_logging
from app.rate_limit import RateLimiter
from app.redis_client import ResilientRedis
from app.routes import (
    caption,
    completions,
    generate,
    health,
    lattice,
    models,
    playground,
    requests,
    rescore,
    score,
    sessions,
)
from app.schemas import ErrorBody
from app.sessions.store import SessionLimits, SessionStore
from app.settings import Settings
from models.tokenizers import use_nltk_data

logger = logging.getLogger(__name__)

ERROR_RESPONSES = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 415, 422, 429, 503, 504)}
EngineFactory = Callable[[Settings, ModelStore, Metrics], Engine]


def build_worker_pool(settings: Settings, store: ModelStore, metrics: Metrics) -> WorkerPool:
    devices = plan_devices(settings.device, settings.workers_per_device)
    threads = settings.worker_threads
    if threads is None and all(d == "cpu" for d in devices):
        # The cores shared among the CPU workers, none held back for the HTTP process: its share
        # of the work is small next to the steps', which use every core they are given.
        threads = max(1, (os.cpu_count() or 1) // len(devices))
    single_thread_rows = settings.single_thread_rows
    if single_thread_rows is None:
        # On a worker of at most two threads a step of a few rows is as fast on one thread, and
        # the second would only spin (docs/benchmarks/thread-settings.md). With more threads a
        # one-row step may be faster spread over all of them: there the rule is the operator's choice.
        single_thread_rows = SMALL_STEP_ROWS if threads is not None and threads <= 2 else 0
    limits = RequestLimits.from_settings(settings).token_limits()
    configs = [
        WorkerConfig(index, store.paths(), device, settings.max_batch_size, settings.batching(BATCH_TASKS), limits, threads,
                     prompt_cache_bytes=int(settings.prompt_cache_mb * 2**20), single_thread_rows=single_thread_rows,
                     model_precisions=store.precisions())
        for index, device in enumerate(devices)
    ]
    return WorkerPool(configs, settings.worker_mode, settings.max_in_flight_per_worker, settings.request_timeout_s, metrics)


def session_limits(settings: Settings) -> SessionLimits:
    return SessionLimits(int(settings.session_memory_mb * 2**20), settings.session_ttl_s, settings.max_sessions_per_key,
                         int(settings.max_session_mb_per_key * 2**20))


def create_app(settings: Settings | None = None, engine_factory: EngineFactory | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_json)
    use_nltk_data(settings.nltk_data)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = discover_models(settings)
        redis = ResilientRedis(settings.redis_url, settings.redis_timeout_s) if settings.redis_url else None
        backend = RedisCache(redis, settings.cache_ttl_s) if redis else InProcessLRU(settings.cache_max_entries)
        engine = (engine_factory or build_worker_pool)(settings, store, metrics)
        app.state.settings, app.state.store, app.state.engine, app.state.metrics = settings, store, engine, metrics
        app.state.cache = ResultCache(backend, lambda hit: metrics.cache.labels("hit" if hit else "miss").inc())
        app.state.api_keys = settings.api_key_set()
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, redis)
        app.state.sessions = SessionStore(session_limits(settings), redis)
        await engine.start()
        if hasattr(engine, "wait_ready") and store.models:
            if not await engine.wait_ready(settings.startup_timeout_s):
                logger.warning("workers not ready after %.0f s; /readyz will say so", settings.startup_timeout_s)
            # The catalogue read the files; what the workers could not load does not serve.
            store.drop_failed(engine.load_failures(), default_preferences(settings))
        logger.info("serving %s", ", ".join(store.models) or "no models")
        try:
            yield
        finally:
            await engine.stop()
            if redis:
                await redis.close()

    # Swagger UI and ReDoc from the fastapi-offline package, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="rnnserve",
        version="0.1.0",
        description="Text generation, sentence scoring and image captioning with recurrent networks.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, limit_for_path=lambda path: settings.max_image_bytes if path == "/v1/caption" else settings.max_body_bytes)
    app.add_middleware(CancelOnDisconnectMiddleware)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    protected = [Depends(require_access)]
    for router in (generate.router, completions.router, score.router, rescore.router, lattice.router, caption.router, models.router,
                   requests.router, sessions.router):
        app.include_router(router, dependencies=protected)
    app.include_router(health.router)
    app.include_router(playground.router)
    return app
