"""POST /v1/generate (JSON, or Server-Sent Events with "stream": true)."""
from __future__ import annotations

from typing import AsyncIterator

from fastapi import APIRouter

from app.cache import cache_key, cached_if
from app.dependencies import CacheDep, EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.engine.base import GenerateInput
from app.engine.messages import ChoiceFinished, PromptInfo, TokenEvent
from app.limits import RequestLimits
from app.schemas import GenerateChoice, GenerateRequest, GenerateResponse, Usage
from app.sse import event_stream, open_stream, sse
from models.registry import GENERATE

router = APIRouter(tags=["generate"])


@router.post(
    "/v1/generate",
    response_model=GenerateResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}},
)
async def generate(body: GenerateRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep,
                   request_id: RequestIdDep):
    RequestLimits.from_settings(settings).check_generation([body.prompt], body.max_tokens, body.n, body.stop_list())
    info = store.resolve(body.model, GENERATE)
    params = body.to_sampling_params()
    request = GenerateInput(info.model_id, body.prompt, params)
    response_id = request_id
    if body.stream:
        first, stream = await open_stream(engine.generate_stream(request, request_id=request_id))
        return event_stream(first, stream, lambda events: render_generate_stream(events, response_id, info.model_id))

    async def compute() -> dict:
        output = await engine.generate(request, request_id=request_id)
        choices = [GenerateChoice(index=i, text=c.text, tokens=c.tokens, finish_reason=c.finish_reason)
                   for i, c in enumerate(output.choices)]
        usage = Usage(prompt_tokens=output.prompt_tokens, completion_tokens=sum(len(c.tokens) for c in choices))
        return {"choices": [c.model_dump() for c in choices], "usage": usage.model_dump()}

    normalised = body.model_dump(exclude={"model", "stream"}) | {"params": [repr(p) for p in params]}
    result, cached = await cached_if(cache, all(p.deterministic for p in params),
                                     cache_key(info.model_id, info.revision, "generate", normalised), compute)
    return GenerateResponse(id=response_id, model=info.model_id, cached=cached, **result)


async def render_generate_stream(events: AsyncIterator, response_id: str, model_id: str) -> AsyncIterator[str]:
    """One event per token, then one final event with each choice's finish_reason and usage."""
    prompt_tokens, completion_tokens = 0, 0
    finished: list[dict] = []
    async for event in events:
        if isinstance(event, PromptInfo):
            prompt_tokens = event.prompt_tokens
        elif isinstance(event, TokenEvent):
            completion_tokens += 1
            yield sse({"id": response_id, "model": model_id, "choices": [{"index": event.choice, "text": event.text, "token": event.token}]})
        elif isinstance(event, ChoiceFinished):
            finished.append({"index": event.choice, "text": "", "finish_reason": event.finish_reason})
    yield sse({"id": response_id, "model": model_id, "choices": sorted(finished, key=lambda c: c["index"]),
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})
