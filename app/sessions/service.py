"""What the session routes do, kept out of the handlers: find the caller's records, check that
their models still serve the revision they started on, send the operations to the engine
(one job per model, batched on the workers with every other session request) and keep the
states that moved."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from app.engine.base import Engine
from app.engine.pool import part_id
from app.engine.session_tasks import REVISION_PARAM, START, SessionInput, SessionOp, SessionOpResult
from app.engine.tasks import SESSION
from app.errors import ApiError
from app.model_store import ModelStore
from app.sessions.records import SessionRecord, new_session_id
from app.sessions.store import SessionStore
from models.registry import GENERATE, SCORE
from models.sampling import InvalidParameter


@dataclass
class SessionContext:
    """What every session operation needs: where records live, the engine, the catalogue of
    models served, whose request it is and its id."""

    store: SessionStore
    engine: Engine
    catalogue: ModelStore
    owner: str
    request_id: str


def changed_model(record: SessionRecord, served_revision: str | None) -> ApiError:
    if served_revision is None:
        return ApiError(409, f"session {record.id!r} belongs to model {record.model_id!r}, which is no longer served; "
                             "start a new session", "id", error_type="conflict")
    return ApiError(409, f"model {record.model_id!r} was reloaded with another revision ({served_revision[:12]}) since session "
                         f"{record.id!r} started on {record.revision[:12]}; its state means nothing to the new weights: start "
                         "a new session", "id", error_type="conflict")


def check_revisions(context: SessionContext, records: list[SessionRecord]) -> None:
    for record in records:
        info = context.catalogue.models.get(record.model_id)
        if info is None or info.revision != record.revision:
            raise changed_model(record, None if info is None else info.revision)


async def start_session(context: SessionContext, model: str | None, text: str | None) -> SessionRecord:
    info = context.catalogue.resolve(model, SCORE)
    if GENERATE not in info.tasks:
        raise ApiError(422, f"model {info.model_id!r} has no recurrent state to keep (an n-gram model); sessions need a "
                            "recurrent language model", "model")
    await context.store.check_room(context.owner, 1, 0)
    result, = await run(context, info.model_id, info.revision, [SessionOp(START, text=text, param="context")])
    record = SessionRecord(new_session_id(), info.model_id, info.revision, context.owner, result.state, result.tokens_read, 0.0)
    await context.store.check_room(context.owner, 1, record.nbytes)
    await context.store.put_many([record])
    return record


async def load(context: SessionContext, ids: list[str]) -> list[SessionRecord]:
    records = await context.store.get_many(ids, context.owner)
    check_revisions(context, records)
    return records


async def run(context: SessionContext, model_id: str, revision: str, ops: list[SessionOp], part: int = 0) -> list[SessionOpResult]:
    """One engine job; a model reloaded in the meantime is a 409, like one found before."""
    try:
        return await context.engine.submit(SESSION, SessionInput(model_id, revision, ops), part_id(context.request_id, part))
    except InvalidParameter as error:
        if error.param == REVISION_PARAM:
            raise ApiError(409, str(error), "id", error_type="conflict") from error
        raise


async def run_on_records(context: SessionContext, records: list[SessionRecord], ops: list[SessionOp]) -> list[SessionOpResult]:
    """The operations (one per record, in order), one engine job per model, all at once."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, (record, op) in enumerate(zip(records, ops)):
        op.state = record.state
        groups.setdefault((record.model_id, record.revision), []).append(index)
    answers = await asyncio.gather(*(run(context, model_id, revision, [ops[i] for i in rows], part)
                                     for part, ((model_id, revision), rows) in enumerate(groups.items())))
    results: list[SessionOpResult | None] = [None] * len(ops)
    for rows, answer in zip(groups.values(), answers):
        for row, result in zip(rows, answer):
            results[row] = result
    return results


def refuse_repeated_advances(ids: list[str], moves: list[bool]) -> None:
    """One request reads one text into a session at most once: two would race for its state."""
    seen: set[str] = set()
    for index, (session_id, moved) in enumerate(zip(ids, moves)):
        if moved and session_id in seen:
            raise ApiError(422, f"session {session_id!r} reads two texts in one request; send them as one text, or fork",
                           f"items.{index}.id")
        if moved:
            seen.add(session_id)


async def keep_moved(context: SessionContext, records: list[SessionRecord], results: list[SessionOpResult],
                     forks: list[bool]) -> list[str]:
    """Store the states that moved: into their own records, or into new records for forks.
    Returns the id each answer names."""
    names, changed, created = [], [], []
    for record, result, fork in zip(records, results, forks):
        if result.state is None:
            names.append(record.id)
            continue
        if fork:
            copy = SessionRecord(new_session_id(), record.model_id, record.revision, record.owner, result.state, result.tokens_read, 0.0)
            created.append(copy)
            names.append(copy.id)
        else:
            record.state, record.tokens_read = result.state, result.tokens_read
            changed.append(record)
            names.append(record.id)
    if created:
        await context.store.check_room(context.owner, len(created), sum(r.nbytes for r in created))
    await context.store.put_many(changed + created)
    return names


async def fork(context: SessionContext, session_id: str) -> SessionRecord:
    record, = await load(context, [session_id])
    copy = SessionRecord(new_session_id(), record.model_id, record.revision, record.owner, record.state, record.tokens_read, 0.0)
    await context.store.check_room(context.owner, 1, copy.nbytes)
    await context.store.put_many([copy])
    return copy


async def delete(context: SessionContext, ids: list[str]) -> list[str]:
    found = await context.store.existing(list(dict.fromkeys(ids)), context.owner)
    await context.store.delete_many(found)
    return [record.id for record in found]


def expires_in(record: SessionRecord) -> int:
    return max(0, int(record.expires_at - time.time()))
