"""/v1/sessions: a language model's state kept between requests, scored and queried piece by
piece, forked, continued by generation, and the batch forms a decoder steps all its beams with.
The work is `app.sessions.service`'s; these handlers read and answer."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.dependencies import EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.engine.session_tasks import GENERATE, NEXT, SCORE, SessionOp, SessionOpResult
from app.errors import ApiError
from app.limits import RequestLimits
from app.schemas import ErrorBody
from app.session_schemas import (
    CandidateScore,
    NextItemFields,
    ScoreItemFields,
    SessionBatchDeleteRequest,
    SessionBatchNextRequest,
    SessionBatchNextResponse,
    SessionBatchScoreRequest,
    SessionBatchScoreResponse,
    SessionCreateRequest,
    SessionDeleted,
    SessionGenerateRequest,
    SessionGenerateResponse,
    SessionNextRequest,
    SessionNextResponse,
    SessionResponse,
    SessionScoreRequest,
    SessionScoreResponse,
    TokenLogprob,
)
from app.sessions import service
from app.sessions.records import SessionRecord, owner_fingerprint
from app.sessions.service import SessionContext

router = APIRouter(tags=["sessions"], responses={409: {"model": ErrorBody}})


async def get_context(request: Request, engine: EngineDep, store: StoreDep, request_id: RequestIdDep) -> SessionContext:
    """The caller is the API key it sent (checked by `app.access`), when the service has keys."""
    key = None
    if request.app.state.api_keys:
        key = request.headers.get("authorization", "").partition(" ")[2].strip()
    return SessionContext(request.app.state.sessions, engine, store, owner_fingerprint(key), request_id)


ContextDep = Annotated[SessionContext, Depends(get_context)]


def describe(record: SessionRecord) -> SessionResponse:
    return SessionResponse(id=record.id, model=record.model_id, revision=record.revision, tokens_read=record.tokens_read,
                           state_bytes=record.nbytes, expires_in_s=service.expires_in(record))


@router.post("/v1/sessions", response_model=SessionResponse)
async def create_session(body: SessionCreateRequest, settings: SettingsDep, context: ContextDep) -> SessionResponse:
    if body.context is not None:
        RequestLimits.from_settings(settings).check_length(len(body.context), "context", "context")
    return describe(await service.start_session(context, body.model, body.context))


# The batch forms come before /v1/sessions/{id}/...: "batch" is never a session id.
@router.post("/v1/sessions/batch/score", response_model=SessionBatchScoreResponse)
async def score_many(body: SessionBatchScoreRequest, settings: SettingsDep, context: ContextDep) -> SessionBatchScoreResponse:
    RequestLimits.from_settings(settings).check_session_items(len(body.items), [item.text for item in body.items])
    return SessionBatchScoreResponse(results=await score(context, [item.id for item in body.items], body.items, batch=True))


@router.post("/v1/sessions/batch/next", response_model=SessionBatchNextResponse)
async def next_many(body: SessionBatchNextRequest, settings: SettingsDep, context: ContextDep) -> SessionBatchNextResponse:
    limits = RequestLimits.from_settings(settings)
    limits.check_session_items(len(body.items), [])
    for index, item in enumerate(body.items):
        limits.check_next(item.top_k, item.candidates, f"items.{index}.")
    return SessionBatchNextResponse(results=await next_tokens(context, [item.id for item in body.items], body.items, batch=True))


@router.post("/v1/sessions/batch/delete", response_model=SessionDeleted)
async def delete_many(body: SessionBatchDeleteRequest, settings: SettingsDep, context: ContextDep) -> SessionDeleted:
    RequestLimits.from_settings(settings).check_session_items(len(body.ids), [], "ids")
    return SessionDeleted(deleted=await service.delete(context, body.ids))


@router.get("/v1/sessions/{id}", response_model=SessionResponse)
async def get_session(id: str, context: ContextDep) -> SessionResponse:
    record, = await service.load(context, [id])
    return describe(record)


@router.post("/v1/sessions/{id}/score", response_model=SessionScoreResponse)
async def score_one(id: str, body: SessionScoreRequest, settings: SettingsDep, context: ContextDep) -> SessionScoreResponse:
    RequestLimits.from_settings(settings).check_length(len(body.text), "text", "text")
    return (await score(context, [id], [body]))[0]


@router.post("/v1/sessions/{id}/next", response_model=SessionNextResponse)
async def next_one(id: str, body: SessionNextRequest, settings: SettingsDep, context: ContextDep) -> SessionNextResponse:
    RequestLimits.from_settings(settings).check_next(body.top_k, body.candidates)
    return (await next_tokens(context, [id], [body]))[0]


@router.post("/v1/sessions/{id}/generate", response_model=SessionGenerateResponse)
async def generate(id: str, body: SessionGenerateRequest, settings: SettingsDep, context: ContextDep) -> SessionGenerateResponse:
    RequestLimits.from_settings(settings).check_generation(["-"], body.max_tokens, 1, body.stop_list())
    records = await service.load(context, [id])
    op = SessionOp(GENERATE, params=body.to_sampling_params(), advance=body.advance)
    result, = await service.run_on_records(context, records, [op])
    name, = await service.keep_moved(context, records, [result], [False])
    completion = result.completion
    return SessionGenerateResponse(id=name, model=records[0].model_id, text=completion.text, tokens=completion.tokens,
                                   finish_reason=completion.finish_reason, tokens_read=result.tokens_read,
                                   advanced=result.state is not None)


@router.post("/v1/sessions/{id}/fork", response_model=SessionResponse)
async def fork(id: str, context: ContextDep) -> SessionResponse:
    return describe(await service.fork(context, id))


@router.delete("/v1/sessions/{id}", response_model=SessionDeleted)
async def delete(id: str, context: ContextDep) -> SessionDeleted:
    deleted = await service.delete(context, [id])
    if not deleted:
        raise ApiError(404, f"no session {id!r} (unknown, expired or deleted)", "id")
    return SessionDeleted(deleted=deleted)


async def score(context: SessionContext, ids: list[str], items: list[ScoreItemFields], batch: bool = False) -> list[SessionScoreResponse]:
    service.refuse_repeated_advances(ids, [item.advance and not item.fork for item in items])
    records = await service.load(context, ids)
    ops = [SessionOp(SCORE, text=item.text, add_eos=item.add_eos, advance=item.advance or item.fork,
                     unknown_words=item.unknown_words, param=f"items.{index}" if batch else "")
           for index, item in enumerate(items)]
    results = await service.run_on_records(context, records, ops)
    names = await service.keep_moved(context, records, results, [item.fork for item in items])
    return [SessionScoreResponse(id=name, model=record.model_id, tokens=r.scored.tokens, token_logprobs=r.scored.token_logprobs,
                                 logprob=r.scored.logprob, num_tokens=r.scored.num_tokens, oov=r.scored.oov,
                                 unknown_words=r.scored.unknown_words, tokens_read=r.tokens_read, advanced=r.state is not None)
            for name, record, r in zip(names, records, results)]


async def next_tokens(context: SessionContext, ids: list[str], items: list[NextItemFields], batch: bool = False) -> list[SessionNextResponse]:
    records = await service.load(context, ids)
    ops = [SessionOp(NEXT, top_k=item.top_k, candidates=list(item.candidates), unknown_words=item.unknown_words,
                     param=f"items.{index}" if batch else "")
           for index, item in enumerate(items)]
    results: list[SessionOpResult] = await service.run_on_records(context, records, ops)
    return [SessionNextResponse(id=record.id, model=record.model_id, top=[TokenLogprob(token=t, logprob=v) for t, v in r.top or []],
                                candidates=[CandidateScore(text=text, tokens=tokens, token_logprobs=values, logprob=logprob, oov=oov)
                                            for text, (tokens, values, logprob, oov) in zip(item.candidates, r.candidates or [])],
                                end_logprob=r.end_logprob, tokens_read=r.tokens_read)
            for record, item, r in zip(records, items, results)]
