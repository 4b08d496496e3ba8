"""POST /v1/completions, compatible with OpenAI's completions API and its clients.

`echo` with `max_tokens: 0` and `logprobs` returns the prompt's token log-probabilities
(natural log, the first token conditioned on the model's start-of-text context), which is
how rescoring tools call it.

`logprobs` follows OpenAI's legacy completions: `text_offset` counts characters from the start
of the prompt whether or not it is echoed (the first generated token of an unechoed completion
lies at len(prompt) or after, past its separator), and with `logprobs: N` every token has its
N likeliest alternatives in `top_logprobs` except the first echoed prompt token, which has
null there as in OpenAI. Its `token_logprobs` entry keeps a value: the model reads a
start-of-text token before the prompt, so the first word has a probability, which rescoring
needs. A stop string drops the tokens that begin at or after it (models.generation.Completion).
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from fastapi import APIRouter

from app.cache import cache_key, cached_if
from app.dependencies import CacheDep, EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.engine.base import GenerateInput, GenerateOutput, ScoredText, ScoreInput
from app.engine.messages import ChoiceFinished, PromptInfo, TokenEvent
from app.engine.pool import part_id
from app.errors import ApiError
from app.limits import RequestLimits
from app.openai_schemas import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    CompletionUsage,
)
from app.sse import event_stream, open_stream, sse
from models.registry import GENERATE, SCORE

router = APIRouter(tags=["openai"])


def build_choice(index: int, prompt: str, output_choice, events: list[TokenEvent], prompt_score: ScoredText | None,
                 body: CompletionRequest) -> CompletionChoice:
    text = (prompt if body.echo else "") + output_choice.text
    logprobs = None
    if body.logprobs is not None:
        tokens, values, tops, offsets = [], [], [], []
        if body.echo and prompt_score is not None:
            tokens += prompt_score.tokens
            values += prompt_score.token_logprobs
            # As in OpenAI, the first prompt token has no alternatives and every later one its N.
            alternatives = prompt_score.top_logprobs or [None] * len(prompt_score.tokens)
            tops += [None if position == 0 else top for position, top in enumerate(alternatives)]
            offsets += prompt_score.text_offset or [0] * len(prompt_score.tokens)
        # A stop string's tokens were generated (and reported as events) before the stop string
        # was seen; the choice's tokens are the ones its text holds, always a prefix of them.
        events = events[: len(output_choice.tokens)]
        # The worker's detokenizer says where each generated token's text starts in the
        # completion; OpenAI counts offsets from the start of the prompt, echoed or not.
        start = len(prompt)
        tokens += [e.token for e in events]
        values += [e.logprob for e in events]
        tops += [e.top_logprobs for e in events]
        offsets += [start + e.offset for e in events]
        logprobs = CompletionLogprobs(tokens=tokens, token_logprobs=values, top_logprobs=tops if body.logprobs else None,
                                      text_offset=offsets)
    return CompletionChoice(text=text, index=index, logprobs=logprobs, finish_reason=output_choice.finish_reason)


@router.post(
    "/v1/completions",
    response_model=CompletionResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}},
)
async def completions(body: CompletionRequest, settings: SettingsDep, store: StoreDep, engine: EngineDep, cache: CacheDep,
                      request_id: RequestIdDep):
    RequestLimits.from_settings(settings).check_generation(body.prompts(), body.max_tokens or 0, body.n or 1, body.stop_list())
    info = store.resolve(body.model, GENERATE)
    params = body.to_sampling_params()
    prompts = body.prompts()
    response_id = request_id
    created = int(time.time())
    if body.stream:
        if len(prompts) > 1:
            raise ApiError(422, "stream supports a single prompt", "prompt")
        first, stream = await open_stream(engine.generate_stream(GenerateInput(info.model_id, prompts[0], params),
                                                                  request_id=request_id))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return event_stream(first, stream, lambda events: render_stream(events, response_id, created, info.model_id, include_usage))

    async def compute() -> dict:
        want_logprobs = body.logprobs
        generations = [engine.generate(GenerateInput(info.model_id, prompt, params), want_logprobs, request_id=part_id(request_id, index))
                       for index, prompt in enumerate(prompts)]
        outputs: list[GenerateOutput] = list(await asyncio.gather(*generations))
        prompt_scores: list[ScoredText | None] = [None] * len(prompts)
        if body.echo and body.logprobs is not None:
            # The prompt's alternatives come from the pass that scores it.
            prompt_scores = await engine.submit(SCORE, ScoreInput(info.model_id, texts=prompts, add_bos=True, add_eos=False,
                                                          top_logprobs=body.logprobs),
                                                  request_id=part_id(request_id, len(prompts)))
        choices = []
        for prompt_index, (prompt, output, prompt_score) in enumerate(zip(prompts, outputs, prompt_scores)):
            for choice_index, choice in enumerate(output.choices):
                events = output.token_events.get(choice_index, [])
                choices.append(build_choice(prompt_index * len(params) + choice_index, prompt, choice, events, prompt_score, body))
        prompt_tokens = sum(o.prompt_tokens for o in outputs)
        completion_tokens = sum(len(c.tokens) for o in outputs for c in o.choices)
        usage = CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens)
        return {"choices": [c.model_dump() for c in choices], "usage": usage.model_dump()}

    normalised = body.model_dump(exclude={"model", "stream", "stream_options", "user"}) | {"params": [repr(p) for p in params]}
    result, cached = await cached_if(cache, all(p.deterministic for p in params),
                                     cache_key(info.model_id, info.revision, "completions", normalised), compute)
    return CompletionResponse(id=response_id, created=created, model=info.model_id, cached=cached, **result)


async def render_stream(events: AsyncIterator, response_id: str, created: int, model_id: str, include_usage: bool) -> AsyncIterator[str]:
    def chunk(choices: list[dict], usage: dict | None = None) -> str:
        return sse({"id": response_id, "object": "text_completion", "created": created, "model": model_id,
                    "choices": choices, "usage": usage})

    prompt_tokens = completion_tokens = 0
    async for event in events:
        if isinstance(event, PromptInfo):
            prompt_tokens = event.prompt_tokens
        elif isinstance(event, TokenEvent):
            completion_tokens += 1
            yield chunk([{"text": event.text, "index": event.choice, "logprobs": None, "finish_reason": None}])
        elif isinstance(event, ChoiceFinished):
            yield chunk([{"text": "", "index": event.choice, "logprobs": None, "finish_reason": event.finish_reason}])
    if include_usage:
        yield chunk([], {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                         "total_tokens": prompt_tokens + completion_tokens})
