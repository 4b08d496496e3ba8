"""POST /v1/generate"""
from __future__ import annotations

import uuid
from dataclasses import asdict

from fastapi import APIRouter

from app.cache import cache_key
from app.dependencies import CacheDep, EngineDep, SettingsDep, StoreDep
from app.engine.base import GenerateInput
from app.errors import ApiError
from app.schemas import GenerateChoice, GenerateRequest, GenerateResponse, Usage

router = APIRouter(tags=["generate"])


def check_limits(body: GenerateRequest, settings) -> None:
    if len(body.prompt) > settings.max_prompt_chars:
        raise ApiError(422, f"prompt has {len(body.prompt)} characters; the limit is {settings.max_prompt_chars}", "prompt")
    if body.max_tokens > settings.max_new_tokens:
        raise ApiError(422, f"max_tokens is limited to {settings.max_new_tokens}", "max_tokens")
    if body.n > settings.max_n:
        raise ApiError(422, f"n is limited to {settings.max_n}", "n")
    if len(body.stop_list()) > settings.max_stop_sequences:
        raise ApiError(422, f"at most {settings.max_stop_sequences} stop strings", "stop")


@router.post("/v1/generate", response_model=GenerateResponse)
async def generate(body: GenerateRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep):
    check_limits(body, settings)
    loaded = store.resolve(body.model, "language_model")
    params = body.to_sampling_params()

    async def compute() -> dict:
        output = await engine.generate(GenerateInput(loaded.model_id, body.prompt, params))
        choices = [GenerateChoice(index=i, **asdict(c)) for i, c in enumerate(output.choices)]
        usage = Usage(prompt_tokens=output.prompt_tokens, completion_tokens=sum(len(c.tokens) for c in choices))
        return {"choices": [c.model_dump() for c in choices], "usage": usage.model_dump()}

    if all(p.deterministic for p in params):
        normalised = body.model_dump(exclude={"model"}) | {"params": [repr(p) for p in params]}
        key = cache_key(loaded.model_id, loaded.revision, "generate", normalised)
        result, cached = await cache.get_or_compute(key, compute)
    else:
        result, cached = await compute(), False
    return GenerateResponse(id=f"gen-{uuid.uuid4().hex}", model=loaded.model_id, cached=cached, **result)
