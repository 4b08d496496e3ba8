"""POST /v1/score"""
from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter

from app.cache import cache_key
from app.dependencies import CacheDep, EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.engine.base import ScoreInput
from app.limits import RequestLimits
from app.schemas import ScoreRequest, ScoreResponse, ScoreResult
from app.scoring_requests import check_interpolation, mix_results, score_texts
from models.registry import SCORE
from models.scoring import rank

router = APIRouter(tags=["score"])


@router.post("/v1/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep,
                request_id: RequestIdDep):
    RequestLimits.from_settings(settings).check_score(*body.inputs())
    if body.models is not None:
        return await score_interpolated(body, settings, store, engine, cache, request_id)
    # An n-gram model scores too (speech recognisers rescore n-best lists with one).
    info = store.resolve(body.model, SCORE)
    request = ScoreInput(info.model_id, body.texts, body.tokens, body.add_bos, body.add_eos, body.unknown_words)

    async def compute() -> dict:
        results = [ScoreResult(**asdict(r)) for r in await engine.submit(SCORE, request, request_id=request_id)]
        return {"results": [r.model_dump() for r in results], "ranking": rank(results)}

    key = cache_key(info.model_id, info.revision, "score", body.model_dump(exclude={"model"}))
    result, cached = await cache.get_or_compute(key, compute)
    return ScoreResponse(model=info.model_id, cached=cached, **result)


async def score_interpolated(body: ScoreRequest, settings, store, engine, cache, request_id: str) -> ScoreResponse:
    infos = [store.resolve(m.model, SCORE, param=f"models.{i}.model") for i, m in enumerate(body.models)]
    weights = [m.weight for m in body.models]
    check_interpolation(infos, weights)

    async def compute() -> dict:
        per_model = await asyncio.gather(*(score_texts(engine, info.model_id, body.texts, None, body.unknown_words,
                                                       settings.max_score_texts, body.add_bos, body.add_eos, request_id, index)
                                           for index, info in enumerate(infos)))
        results = [ScoreResult(**asdict(r)) for r in mix_results(list(per_model), weights)]
        return {"results": [r.model_dump() for r in results], "ranking": rank(results)}

    key = cache_key("+".join(i.model_id for i in infos), "+".join(i.revision for i in infos), "score", body.model_dump())
    result, cached = await cache.get_or_compute(key, compute)
    return ScoreResponse(model="+".join(i.model_id for i in infos), models=body.models, cached=cached, **result)
