"""Scoring many texts with one or several models through the engine, shared by /v1/score and
/v1/rescore: chunks that respect the per-job limit, and per-token linear interpolation
(models.interpolation) with its checks."""
from __future__ import annotations

import asyncio
import math

from app.engine.base import Engine, ScoredText, ScoreInput
from app.engine.pool import part_id
from app.errors import ApiError
from models.registry import SCORE, ModelFacts
from models.interpolation import check_weights, incompatibility, mix


async def score_texts(engine: Engine, model_id: str, texts: list[str], contexts: list[str | None] | None, unknown_words: str,
                      chunk: int, add_bos: bool = True, add_eos: bool = True, request_id: str | None = None,
                      part: int = 0) -> list[ScoredText]:
    """Score `texts` in jobs of at most `chunk` texts; with a request id, each job is a part of
    it (`part_id(request_id, part, job)`), so aborting the request stops them all."""
    jobs = [engine.submit(SCORE, ScoreInput(model_id, texts=texts[i : i + chunk], add_bos=add_bos, add_eos=add_eos,
                                            unknown_words=unknown_words, contexts=None if contexts is None else contexts[i : i + chunk]),
                          request_id=None if request_id is None else part_id(request_id, part, job))
            for job, i in enumerate(range(0, len(texts), chunk))]
    return [result for part in await asyncio.gather(*jobs) for result in part]


def check_interpolation(infos: list[ModelFacts], weights: list[float], param: str = "models") -> None:
    """422 unless the models can be mixed per token with these weights."""
    try:
        check_weights(weights)
    except ValueError as error:
        raise ApiError(422, str(error), param) from error
    first = infos[0]
    for index, info in enumerate(infos[1:], start=1):
        if info.tokenization is None or first.tokenization is None:
            raise ApiError(422, f"{info.model_id} is not a language model", f"{param}.{index}.model")
        why = incompatibility(first.tokenization, info.tokenization)
        if why:
            raise ApiError(422, f"{info.model_id} cannot be mixed per token with {first.model_id}: {why}; "
                                f"combine them log-linearly instead", f"{param}.{index}.model")


def mix_results(per_model: list[list[ScoredText]], weights: list[float]) -> list[ScoredText]:
    """Per text, the token log-probabilities of the mixture; tokens and unknown words as the
    first model has them."""
    mixed = []
    for texts in zip(*per_model):
        lengths = {len(t.token_logprobs) for t in texts}
        if len(lengths) != 1:
            raise ApiError(422, "the models split a text into different numbers of tokens; they cannot be mixed per token", "models")
        values = [round(float(v), 6) for v in mix([t.token_logprobs for t in texts], weights)]
        total = math.fsum(values)
        first = texts[0]
        mixed.append(ScoredText(tokens=first.tokens, token_logprobs=values, logprob=round(total, 6), num_tokens=len(values),
                                perplexity=round(math.exp(-total / len(values)), 4) if values else float("nan"),
                                oov=first.oov, num_unknown=first.num_unknown, unknown_words=first.unknown_words,
                                text_offset=first.text_offset))
    return mixed
