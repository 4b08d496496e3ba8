"""POST /v1/rescore/lattice: rescore a recogniser's lattices (HTK SLF) with a language model
(models.lattice_rescoring). Each lattice is read and checked here, so a malformed one is a 422
naming its line before any model work; the expansion runs on the workers as the `lattice` task."""
from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter

from app.cache import cache_key
from app.dependencies import CacheDep, EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.engine.lattice_tasks import LatticeInput
from app.engine.tasks import LATTICE
from app.errors import ApiError
from app.lattice_schemas import LatticeRescoreRequest, LatticeRescoreResponse
from app.limits import RequestLimits
from models.lattice import Lattice, LatticeError, parse_slf
from models.lattice_rescoring import LatticeWeights, RescoredLattice, ScoreRangeError, check_score_range
from models.registry import SCORE

router = APIRouter(tags=["score"])
DECIMALS = 6


@router.post("/v1/rescore/lattice", response_model=LatticeRescoreResponse)
async def rescore_lattice(body: LatticeRescoreRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep,
                          cache: CacheDep, request_id: RequestIdDep):
    limits = RequestLimits.from_settings(settings)
    limits.check_lattices(body.lattices)
    info = store.resolve(body.model, SCORE)
    # Reading a large lattice takes a while: off the event loop.
    lattices = await asyncio.to_thread(read_lattices, body, limits, body.weights())

    async def compute() -> dict:
        request = LatticeInput(info.model_id, lattices, body.weights(), body.options(limits.max_lattice_states), body.unknown_words)
        rescored = await engine.submit(LATTICE, request, request_id=request_id)
        return {"results": [result_body(item.id, result) for item, result in zip(body.lattices, rescored)]}

    key = cache_key(info.model_id, info.revision, "rescore/lattice", body.model_dump(exclude={"model"}))
    result, cached = await cache.get_or_compute(key, compute)
    return LatticeRescoreResponse(model=info.model_id, cached=cached, **result)


def read_lattices(body: LatticeRescoreRequest, limits: RequestLimits, weights: LatticeWeights) -> list[Lattice]:
    """Each lattice parsed within the limits, its scores within a float's range with these
    weights; 422 naming the lattice (and the line) otherwise."""
    lattices = []
    for index, item in enumerate(body.lattices):
        try:
            lattice = parse_slf(item.slf, limits.max_lattice_nodes, limits.max_lattice_links)
        except LatticeError as error:
            raise ApiError(422, f"lattices.{index}.slf: {error}", f"lattices.{index}.slf") from error
        try:
            check_score_range(lattice, weights, body.posterior_scale)
        except ScoreRangeError as error:
            raise ApiError(422, f"lattices.{index}: {error}", error.param) from error
        lattices.append(lattice)
    return lattices


def result_body(lattice_id: str, result: RescoredLattice) -> dict:
    best = result.nbest[0]
    return {
        "id": lattice_id,
        "text": " ".join(best.words),
        "score": round(best.score, DECIMALS),
        "words": [{"word": w.word, "start": w.start, "end": w.end, "confidence": round(w.confidence, DECIMALS)} for w in result.best],
        "nbest": [{"text": " ".join(path.words), **{key: round(value, DECIMALS) if isinstance(value, float) else value
                                                     for key, value in asdict(path).items()}} for path in result.nbest],
        "expanded_states": result.expanded_states,
        "expanded_arcs": result.expanded_arcs,
        "pruned_states": result.pruned_states,
        "lm_queries": result.lm_queries,
    }
