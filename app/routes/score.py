"""POST /v1/score"""
from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter

from app.cache import cache_key
from app.dependencies import CacheDep, EngineDep, SettingsDep, StoreDep
from app.engine.base import ScoreInput
from app.errors import ApiError
from app.limits import RequestLimits
from app.schemas import ScoreRequest, ScoreResponse, ScoreResult
from app.scoring_requests import check_interpolation, mix_results, score_texts
from models.registry import SCORE
from models.scoring import rank

router = APIRouter(tags=["score"])


def check_limits(body: ScoreRequest, settings) -> None:
    if (body.texts is None) == (body.tokens is None):
        raise ApiError(422, "give exactly one of 'texts' or 'tokens'", "texts")
    limits = RequestLimits.from_settings(settings)
    items = body.texts if body.texts is not None else body.tokens
    param = "texts" if body.texts is not None else "tokens"
    if len(items) > settings.max_score_texts:
        raise ApiError(422, f"at most {settings.max_score_texts} items per request", param)
    for index, item in enumerate(items):
        size = len(item) if isinstance(item, str) else sum(len(t) for t in item)
        limits.check_length(size, f"{param}.{index}", "item")
        if isinstance(item, str) and not item.strip() and not body.add_eos:
            raise ApiError(422, "empty text", f"{param}.{index}")


@router.post("/v1/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep):
    check_limits(body, settings)
    if body.models is not None:
        return await score_interpolated(body, settings, store, engine, cache)
    if body.interpolation is not None:
        raise ApiError(422, "interpolation mixes `models`: give them instead of `model`", "interpolation")
    # An n-gram model scores too (speech recognisers rescore n-best lists with one).
    loaded = store.resolve(body.model, SCORE)
    request = ScoreInput(loaded.model_id, body.texts, body.tokens, body.add_bos, body.add_eos, body.unknown_words)

    async def compute() -> dict:
        results = [ScoreResult(**asdict(r)) for r in await engine.score(request)]
        return {"results": [r.model_dump() for r in results], "ranking": rank(results)}

    key = cache_key(loaded.model_id, loaded.revision, "score", body.model_dump(exclude={"model"}))
    result, cached = await cache.get_or_compute(key, compute)
    return ScoreResponse(model=loaded.model_id, cached=cached, **result)


async def score_interpolated(body: ScoreRequest, settings, store, engine, cache) -> ScoreResponse:
    if body.model is not None:
        raise ApiError(422, "give `model` or `models`, not both", "model")
    if body.interpolation != "linear":
        raise ApiError(422, "several models mix per token: set interpolation to 'linear' (or use /v1/rescore to combine them log-linearly)", "interpolation")
    if body.texts is None:
        raise ApiError(422, "mixed models score `texts` (each model tokenizes them itself)", "tokens")
    infos = [store.resolve(m.model, SCORE, param=f"models.{i}.model") for i, m in enumerate(body.models)]
    weights = [m.weight for m in body.models]
    check_interpolation(infos, weights)

    async def compute() -> dict:
        per_model = await asyncio.gather(*(score_texts(engine, info.model_id, body.texts, None, body.unknown_words,
                                                       settings.max_score_texts, body.add_bos, body.add_eos) for info in infos))
        results = [ScoreResult(**asdict(r)) for r in mix_results(list(per_model), weights)]
        return {"results": [r.model_dump() for r in results], "ranking": rank(results)}

    key = cache_key("+".join(i.model_id for i in infos), "+".join(i.revision for i in infos), "score", body.model_dump())
    result, cached = await cache.get_or_compute(key, compute)
    return ScoreResponse(model="+".join(i.model_id for i in infos), models=body.models, cached=cached, **result)
