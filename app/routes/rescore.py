"""POST /v1/rescore: rerank a recogniser's n-best lists with one or more language models,
combined log-linearly with the acoustic and named scores (models.rescoring), then decide per list
(MAP or MBR) with posteriors and word confidences (app.rescore_output). Each model scores the
hypotheses in the form its training text was in (models.rescoring.model_normalization) unless
the request says normalize: false. Hypotheses go through /v1/score's dynamic batching."""
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
from models.rescoring import RescoringWeights, ScoreOverflow, in_model_form, model_normalization, rescore_list
from models.text_normalization import NONE

router = APIRouter(tags=["score"])
LINEAR = "linear"  # the mixture's entry in lm_logprobs


@router.post("/v1/rescore", response_model=RescoreResponse)
async def rescore(body: RescoreRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep,
                  request_id: RequestIdDep):
    RequestLimits.from_settings(settings).check_rescore(body.utterances)
    requested = body.models or [WeightedModel(model=default_model(settings, store), weight=1.0)]
    infos = [store.resolve(m.model, SCORE, param=f"models.{i}.model") for i, m in enumerate(requested)]
    normalizations = [normalization_of(info, index, body) for index, info in enumerate(infos)]
    texts = [h.text for u in body.utterances for h in u.hypotheses]
    contexts = [u.context for u in body.utterances for _ in u.hypotheses]
    linear = body.interpolation == "linear"
    if linear:
        check_interpolation(infos, [m.weight for m in requested])
        if len(set(normalizations)) > 1:
            raise ApiError(422, "linear interpolation mixes models per token over one text, but these models read text in "
                                f"different forms ({', '.join(f'{i.model_id}: {n}' for i, n in zip(infos, normalizations))}); "
                                "mix models of one form, or combine them loglinear", "interpolation")

    async def compute() -> dict:
        # Normalising thousands of hypotheses is CPU work: off the event loop.
        inputs = await asyncio.to_thread(
            lambda: [(in_model_form(texts, form), in_model_form(contexts, form)) for form in normalizations])
        scored = await asyncio.gather(*(score_texts(engine, info.model_id, model_texts, model_contexts, body.unknown_words,
                                                    settings.max_score_texts, request_id=request_id, part=index)
                                        for index, (info, (model_texts, model_contexts)) in enumerate(zip(infos, inputs))))
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
                    body.model_dump(exclude={"models"}) | {"weights": [m.weight for m in requested], "forms": normalizations})
    result, cached = await cache.get_or_compute(key, compute)
    return RescoreResponse(models=requested, interpolation=body.interpolation, decision=body.decision, cached=cached, **result)


def normalization_of(info, index: int, body: RescoreRequest) -> str:
    """The form the model reads hypotheses in (NONE when the request says normalize: false)."""
    if not body.normalize:
        return NONE
    try:
        return model_normalization(info.path, info.revision)
    except (OSError, ValueError) as error:
        # A config.json edited after the model was listed: the model cannot say what it reads.
        raise ApiError(422, f"model {info.model_id!r} cannot rescore: {error}", f"models.{index}.model" if body.models else "models")


def default_model(settings, store) -> str:
    """The rescoring default (a model of recogniser-form text) when it is loaded, else the
    default language model."""
    preferred = settings.default_rescoring_model
    if preferred and preferred in store.models and SCORE in store.models[preferred].tasks:
        return preferred
    return store.resolve(None, SCORE).model_id


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
