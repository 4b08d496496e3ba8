"""POST /v1/rescore: rerank a recogniser's n-best lists with one or more language models,
combined log-linearly with the acoustic and named scores (models.rescoring), then decide per list
(MAP or MBR) with posteriors and word confidences (app.rescore_output). Hypotheses go through
/v1/score's dynamic batching."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.cache import cache_key
from app.dependencies import CacheDep, EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.errors import ApiError
from app.limits import RequestLimits
from app.rescore_output import utterance_result
from app.rescore_schemas import RescoreRequest, RescoreResponse
from app.schemas import WeightedModel
from app.scoring_requests import check_interpolation, mix_results, score_texts
from models.registry import SCORE
from models.rescoring import RescoringWeights, ScoreOverflow, rescore_list

router = APIRouter(tags=["score"])
LINEAR = "linear"  # the mixture's entry in lm_logprobs


@router.post("/v1/rescore", response_model=RescoreResponse)
async def rescore(body: RescoreRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep,
                  request_id: RequestIdDep):
    RequestLimits.from_settings(settings).check_rescore(body.utterances)
    requested = body.models or [WeightedModel(model=store.resolve(None, SCORE).model_id, weight=1.0)]
    infos = [store.resolve(m.model, SCORE, param=f"models.{i}.model") for i, m in enumerate(requested)]
    texts = [h.text for u in body.utterances for h in u.hypotheses]
    contexts = [u.context for u in body.utterances for _ in u.hypotheses]
    linear = body.interpolation == "linear"
    if linear:
        check_interpolation(infos, [m.weight for m in requested])

    async def compute() -> dict:
        scored = await asyncio.gather(*(score_texts(engine, info.model_id, texts, contexts, body.unknown_words, settings.max_score_texts,
                                                    request_id=request_id, part=index)
                                        for index, info in enumerate(infos)))
        logprobs = {info.model_id: [r.logprob for r in results] for info, results in zip(infos, scored)}
        if linear:
            logprobs[LINEAR] = [r.logprob for r in mix_results(list(scored), [m.weight for m in requested])]
            lm_weights = {LINEAR: body.lm_weight}
        else:
            lm_weights = {m.model: m.weight for m in requested}
        weights = RescoringWeights(lm_weights, body.acoustic_weight, body.word_insertion_penalty, body.score_weights or {})
        # Posteriors, alignments and MBR are CPU work (quadratic in a list's length): off the event loop.
        return {"results": await asyncio.to_thread(decide_all, body, logprobs, weights, requested)}

    key = cache_key("+".join(i.model_id for i in infos), "+".join(i.revision for i in infos), "rescore",
                    body.model_dump(exclude={"models"}) | {"weights": [m.weight for m in requested]})
    result, cached = await cache.get_or_compute(key, compute)
    return RescoreResponse(models=requested, interpolation=body.interpolation, decision=body.decision, cached=cached, **result)


def decide_all(body: RescoreRequest, logprobs: dict[str, list[float]], weights: RescoringWeights,
               requested: list[WeightedModel]) -> list[dict]:
    results, position = [], 0
    for utterance in body.utterances:
        size = len(utterance.hypotheses)
        lm = [{model: values[position + j] for model, values in logprobs.items()} for j in range(size)]
        acoustic = [h.acoustic_score for h in utterance.hypotheses]
        named = [h.scores or {} for h in utterance.hypotheses]
        try:
            scores, words, order = rescore_list([h.text for h in utterance.hypotheses], acoustic, lm, weights, named)
        except ScoreOverflow as error:
            raise overflow_error(error, len(results), body, requested) from error
        results.append(utterance_result(utterance, lm, scores, words, order, body.posterior_scale, body.decision,
                                        body.format == "ctm"))
        position += size
    return results


def overflow_error(error: ScoreOverflow, utterance: int, body: RescoreRequest, requested: list[WeightedModel]) -> ApiError:
    """422 naming the weight whose term of the score overflowed."""
    if error.named:
        param = f"score_weights.{error.term}"
    elif error.term == "acoustic":
        param = "acoustic_weight"
    elif error.term == "words":
        param = "word_insertion_penalty"
    elif error.term == LINEAR:
        param = "lm_weight"
    else:
        index = next(i for i, m in enumerate(requested) if m.model == error.term)
        param = f"models.{index}.weight" if body.models else "models"
    return ApiError(422, f"the score of utterances.{utterance}.hypotheses.{error.hypothesis} is not a finite number: {error}; "
                         f"use smaller weights or scores", param)
