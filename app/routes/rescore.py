"""POST /v1/rescore: rerank a recogniser's n-best lists with one or more language models,
combined log-linearly with the acoustic scores (models.rescoring). Hypotheses go through
/v1/score's dynamic batching."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.cache import cache_key
from app.dependencies import CacheDep, EngineDep, SettingsDep, StoreDep
from app.errors import ApiError
from app.limits import RequestLimits
from app.rescore_schemas import RescoreRequest, RescoreResponse
from app.schemas import WeightedModel
from app.scoring_requests import check_interpolation, mix_results, score_texts
from models.registry import SCORE
from models.rescoring import RescoringWeights, rescore_list

router = APIRouter(tags=["score"])
LINEAR = "linear"  # the mixture's entry in lm_logprobs


def check_limits(body: RescoreRequest, settings) -> None:
    if len(body.utterances) > settings.max_rescore_utterances:
        raise ApiError(413, f"at most {settings.max_rescore_utterances} utterances per request", "utterances")
    limits = RequestLimits.from_settings(settings)
    total = 0
    for u, utterance in enumerate(body.utterances):
        if len(utterance.hypotheses) > settings.max_rescore_hypotheses:
            raise ApiError(413, f"at most {settings.max_rescore_hypotheses} hypotheses per utterance", f"utterances.{u}.hypotheses")
        with_acoustic = {h.acoustic_score is not None for h in utterance.hypotheses}
        if len(with_acoustic) > 1:
            raise ApiError(422, "give an acoustic_score for every hypothesis of an utterance, or for none", f"utterances.{u}.hypotheses")
        for h, hypothesis in enumerate(utterance.hypotheses):
            limits.check_length(len(hypothesis.text) + len(utterance.context or ""), f"utterances.{u}.hypotheses.{h}.text",
                                "hypothesis with its context")
        total += len(utterance.hypotheses)
    if total > settings.max_rescore_hypotheses_total:
        raise ApiError(413, f"at most {settings.max_rescore_hypotheses_total} hypotheses per request", "utterances")
    if body.models and len({m.model for m in body.models}) != len(body.models):
        raise ApiError(422, "each model at most once", "models")


@router.post("/v1/rescore", response_model=RescoreResponse)
async def rescore(body: RescoreRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep):
    check_limits(body, settings)
    requested = body.models or [WeightedModel(model=store.resolve(None, SCORE).model_id, weight=1.0)]
    infos = [store.resolve(m.model, SCORE, param=f"models.{i}.model") for i, m in enumerate(requested)]
    texts = [h.text for u in body.utterances for h in u.hypotheses]
    contexts = [u.context for u in body.utterances for _ in u.hypotheses]
    linear = body.interpolation == "linear"
    if linear:
        if len(infos) < 2:
            raise ApiError(422, "linear interpolation mixes two or more models", "models")
        check_interpolation(infos, [m.weight for m in requested])

    async def compute() -> dict:
        scored = await asyncio.gather(*(score_texts(engine, info.model_id, texts, contexts, body.unknown_words, settings.max_score_texts)
                                        for info in infos))
        logprobs = {info.model_id: [r.logprob for r in results] for info, results in zip(infos, scored)}
        if linear:
            logprobs[LINEAR] = [r.logprob for r in mix_results(list(scored), [m.weight for m in requested])]
            weights = RescoringWeights({LINEAR: body.lm_weight}, body.acoustic_weight, body.word_insertion_penalty)
        else:
            weights = RescoringWeights({m.model: m.weight for m in requested}, body.acoustic_weight, body.word_insertion_penalty)
        results, position = [], 0
        for utterance in body.utterances:
            size = len(utterance.hypotheses)
            lm = [{model: values[position + j] for model, values in logprobs.items()} for j in range(size)]
            acoustic = [h.acoustic_score for h in utterance.hypotheses]
            scores, words, order = rescore_list([h.text for h in utterance.hypotheses], acoustic, lm, weights)
            hypotheses = [{"text": h.text, "acoustic_score": h.acoustic_score, "lm_logprobs": lm[j], "num_words": words[j],
                           "score": round(scores[j], 6)} for j, h in enumerate(utterance.hypotheses)]
            results.append({"id": utterance.id, "best": order[0], "ranking": order, "hypotheses": hypotheses})
            position += size
        return {"results": results}

    key = cache_key("+".join(i.model_id for i in infos), "+".join(i.revision for i in infos), "rescore",
                    body.model_dump(exclude={"models"}) | {"weights": [m.weight for m in requested]})
    result, cached = await cache.get_or_compute(key, compute)
    return RescoreResponse(models=requested, interpolation=body.interpolation, cached=cached, **result)
