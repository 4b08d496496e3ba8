"""Session work inside a worker: states carried in by the requests, read further, asked what
comes next, or continued by generation, all the operations of the requests that wait together
run per model and kind as one batch (`models.session_state`).

A request carries each session's state as bytes and gets back the state after its operation;
the worker keeps nothing, so any worker (and any replica) can serve any session and a worker's
restart loses none."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from app.engine.base import Choice, ScoredText
from app.engine.messages import JobError, JobResult, TaskJob
from models.decode_loop import step_rows
from models.generation import CompletionTracker, GenerationBatch
from models.sampling import BatchSampler, InvalidParameter, SamplingParams
from models.scoring import summarise
from models.session_state import (
    SessionState,
    StateFormatError,
    advance,
    continuation_logprobs,
    first_logprobs,
    fits,
    from_bytes,
    next_logprobs,
    stack,
    start,
    to_bytes,
)

START, SCORE, NEXT, GENERATE = "start", "score", "next", "generate"
# The param an engine error names when a session's model changed under it (the route answers 409).
REVISION_PARAM = "session.revision"


@dataclass
class SessionOp:
    """One operation on one session. `state` is the session's bytes (none for `start`)."""

    kind: str  # START | SCORE | NEXT | GENERATE
    state: bytes | None = None
    text: str | None = None  # start: the context read first; score: the text scored
    add_eos: bool = False  # score: the end of the text is scored too
    advance: bool = True  # score, generate: the state returned has read the text
    unknown_words: str = "spell"
    top_k: int = 0  # next: the likeliest tokens
    candidates: list[str] = field(default_factory=list)  # next: texts scored as the continuation
    params: SamplingParams | None = None  # generate
    param: str = ""  # the request's name for this operation, in errors ("items.3")


@dataclass
class SessionInput:
    model_id: str
    revision: str  # the revision the sessions were started on: another one is refused
    ops: list[SessionOp]


@dataclass
class SessionOpResult:
    state: bytes | None = None  # the state after the operation when it moved (start, advance)
    tokens_read: int = 0
    scored: ScoredText | None = None  # score
    top: list[tuple[str, float]] | None = None  # next
    # next: per candidate (tokens, token log-probabilities, log-probability, unknown flags); plain
    # tuples, since thousands of them cross the process boundary per batch
    candidates: list[tuple[list[str], list[float], float, list[bool]]] | None = None
    end_logprob: float | None = None  # next: the text ends here
    completion: Choice | None = None  # generate


def count_ops(request: SessionInput) -> int:
    return len(request.ops)


@dataclass
class Prepared:
    op: SessionOp
    session: SessionState | None
    ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    oov: list[bool] = field(default_factory=list)
    candidates: list = field(default_factory=list)  # EncodedText per candidate


class Encoder:
    """A model's tokenization of continuation texts, each distinct text once per batch: a
    decoder asks every beam of an utterance about the same candidate words."""

    def __init__(self, loaded) -> None:
        self.loaded, self.known = loaded, {}

    def __call__(self, text: str, add_end: bool = False):
        key = (text, add_end)
        if key not in self.known:
            self.known[key] = self.loaded.encode_text(text, add_start=False, add_end=add_end)
        return self.known[key]


def prepare(loaded, op: SessionOp, limits, encode: Encoder | None = None) -> Prepared:
    """Parse the state and tokenize the text of one operation; InvalidParameter for what cannot run."""
    encode = encode or Encoder(loaded)
    session = None
    if op.kind != START:
        try:
            session, _ = from_bytes(op.state or b"")
        except StateFormatError as error:
            raise InvalidParameter(op.param or "id", f"the session's state cannot be read: {error}") from error
        if not fits(loaded.model, session):
            raise InvalidParameter(REVISION_PARAM, "the session's state does not fit the model it names")
    prepared = Prepared(op, session)
    if op.kind == START:
        encoded = loaded.encode_text("", add_start=True, context=op.text)
        if len(encoded.ids) > limits.max_prompt_tokens:
            raise InvalidParameter(_name(op, "context"), f"{len(encoded.ids)} tokens; the limit is {limits.max_prompt_tokens}")
        prepared.ids = encoded.ids
    elif op.kind == SCORE:
        encoded = encode(op.text or "", op.add_eos)
        if not encoded.ids:
            raise InvalidParameter(_name(op, "text"), "nothing to score: the text has no tokens (set add_eos to score the end)")
        if len(encoded.ids) > limits.max_score_tokens:
            raise InvalidParameter(_name(op, "text"), f"{len(encoded.ids)} tokens; the limit is {limits.max_score_tokens}")
        prepared.ids, prepared.tokens, prepared.oov = encoded.ids, encoded.tokens, encoded.oov
    elif op.kind == NEXT:
        for index, candidate in enumerate(op.candidates):
            encoded = encode(candidate)
            if not encoded.ids:
                raise InvalidParameter(_name(op, f"candidates.{index}"), "a candidate has no tokens")
            if len(encoded.ids) > limits.max_score_tokens:
                raise InvalidParameter(_name(op, f"candidates.{index}"), f"{len(encoded.ids)} tokens; the limit is {limits.max_score_tokens}")
            prepared.candidates.append(encoded)
    return prepared


def _name(op: SessionOp, field_name: str) -> str:
    return f"{op.param}.{field_name}" if op.param else field_name


def run_session_batch(models: dict, jobs: list[TaskJob], emit, config) -> list[int]:
    """Answers each job with one SessionOpResult per operation, in order; a job whose model
    changed revision, or with an operation that cannot run, fails alone. Returns the batch sizes
    (operations per model and kind)."""
    sizes: list[int] = []
    groups: dict[str, list[tuple[TaskJob, list[Prepared]]]] = {}
    encoders: dict[str, Encoder] = {}
    for job in jobs:
        request: SessionInput = job.request
        loaded = models[request.model_id]
        if loaded.revision != request.revision:
            emit(JobError(job.request_id, "invalid", f"model {request.model_id!r} changed since this session started "
                                                     f"(revision {request.revision[:12]}, served {loaded.revision[:12]})",
                          REVISION_PARAM))
            continue
        try:
            encode = encoders.setdefault(request.model_id, Encoder(loaded))
            prepared = [prepare(loaded, op, config.limits, encode) for op in request.ops]
        except InvalidParameter as error:
            emit(JobError(job.request_id, "invalid", str(error), error.param))
            continue
        groups.setdefault(request.model_id, []).append((job, prepared))
    for model_id, items in groups.items():
        loaded = models[model_id]
        flat = [item for _, prepared in items for item in prepared]
        results = run_ops(loaded, flat, sizes)
        position = 0
        for job, prepared in items:
            emit(JobResult(job.request_id, results[position : position + len(prepared)]))
            position += len(prepared)
    return sizes


def run_ops(loaded, items: list[Prepared], sizes: list[int]) -> list[SessionOpResult]:
    results = [SessionOpResult() for _ in items]
    for kind, runner in ((START, _run_starts), (SCORE, _run_scores), (NEXT, _run_nexts), (GENERATE, _run_generations)):
        rows = [index for index, item in enumerate(items) if item.op.kind == kind]
        if rows:
            sizes.append(len(rows))
            for row, result in zip(rows, runner(loaded, [items[row] for row in rows])):
                results[row] = result
    return results


def _moved(session: SessionState) -> SessionOpResult:
    return SessionOpResult(state=to_bytes(session), tokens_read=session.tokens_read)


def _run_starts(loaded, items: list[Prepared]) -> list[SessionOpResult]:
    return [_moved(session) for session in start(loaded.model, [item.ids for item in items])]


def _spelled(loaded, unknown_words: str) -> bool:
    return unknown_words == "spell" and loaded.spelling is not None and loaded.tokenizer.spells_unknown_words


def _scored(loaded, tokens: list[str], oov: list[bool], logprobs: list[float], unknown_words: str) -> ScoredText:
    """A response item as /v1/score gives it: an unknown word spelled when asked (open vocabulary)."""
    spell = _spelled(loaded, unknown_words)
    if spell and any(oov):
        logprobs = [lp + loaded.spelling.logprob(token) if unknown else lp for lp, token, unknown in zip(logprobs, tokens, oov)]
    score = summarise(list(logprobs))
    return ScoredText(tokens=tokens, token_logprobs=[round(x, 6) for x in score.token_logprobs], logprob=round(score.logprob, 6),
                      num_tokens=score.num_tokens, perplexity=round(score.perplexity, 4), oov=oov, num_unknown=sum(oov),
                      unknown_words="spell" if spell else "unk")


def _run_scores(loaded, items: list[Prepared]) -> list[SessionOpResult]:
    logprobs, advanced = advance(loaded.model, [item.session for item in items], [item.ids for item in items])
    results = []
    for item, values, session in zip(items, logprobs, advanced):
        result = _moved(session) if item.op.advance else SessionOpResult(tokens_read=item.session.tokens_read)
        result.scored = _scored(loaded, item.tokens, item.oov, values, item.op.unknown_words)
        results.append(result)
    return results


def _run_nexts(loaded, items: list[Prepared]) -> list[SessionOpResult]:
    sessions = [item.session for item in items]
    model = loaded.model
    end_id = loaded.vocab.encode([loaded.tokenizer.config.end_token])[0]
    owners = [(row, candidate) for row, item in enumerate(items) for candidate in item.candidates]
    # The end and each candidate's first token read the next-token distribution, only where
    # they fall in it; candidates of several tokens run the model over the rest, all as one batch.
    firsts = first_logprobs(model, sessions, list(range(len(items))) + [row for row, _ in owners],
                            [end_id] * len(items) + [candidate.ids[0] for _, candidate in owners])
    ends, single = firsts[: len(items)], iter(firsts[len(items) :])
    longer = [(row, candidate) for row, candidate in owners if len(candidate.ids) > 1]
    continued = iter(continuation_logprobs(model, [sessions[row] for row, _ in longer], [c.ids for _, c in longer]))
    scored = [[next(single)] if len(candidate.ids) == 1 else (next(single), next(continued))[1] for _, candidate in owners]
    results = [SessionOpResult(tokens_read=item.session.tokens_read, candidates=[], end_logprob=round(end, 6))
               for item, end in zip(items, ends)]
    ranked = [row for row, item in enumerate(items) if item.op.top_k]
    if ranked:
        distributions = next_logprobs(model, [sessions[row] for row in ranked])  # (R, V): only rows that asked for top_k
        for row, distribution in zip(ranked, distributions):
            values, ids = distribution.topk(min(items[row].op.top_k, distribution.size(0)))
            results[row].top = [(loaded.vocab.tokens[i], round(v, 6)) for i, v in zip(ids.tolist(), values.tolist())]
    for (row, candidate), values in zip(owners, scored):
        score = _scored(loaded, candidate.tokens, candidate.oov, values, items[row].op.unknown_words)
        results[row].candidates.append((score.tokens, score.token_logprobs, score.logprob, score.oov))
    return results


def _run_generations(loaded, items: list[Prepared]) -> list[SessionOpResult]:
    """Every row continues from its session's state through the decode step all generation
    shares (`models.decode_loop.step_rows`)."""
    model, vocab = loaded.model, loaded.vocab
    params = [item.op.params for item in items]
    trackers = [CompletionTracker(p, vocab, loaded.tokenizer, incremental_text=False, context=vocab.decode(item.session.recent))
                for p, item in zip(params, items)]
    for tracker in trackers:
        if tracker.params.max_tokens == 0:
            tracker.completion.finish_reason = "length"
    live = [row for row, tracker in enumerate(trackers) if not tracker.finished]
    if live:
        state, hidden = stack(model, [items[row].session for row in live])
        sampler = BatchSampler([params[row] for row in live], len(vocab), vocab.unk_id, vocab.eos_id, hidden.device)
        batch = GenerationBatch.resumed(model, state, hidden, sampler)
        with torch.inference_mode():
            while batch is not None:
                batch, keep = step_rows(batch, [len(trackers[row].completion.token_ids) for row in live],
                                        lambda index, token, _: trackers[live[index]].take(token))
                live = [live[index] for index in keep]
    read = [tracker.completion.token_ids if item.op.advance else [] for tracker, item in zip(trackers, items)]
    _, advanced = advance(model, [item.session for item in items], read, score=False)
    results = []
    for item, tracker, session, ids in zip(items, trackers, advanced, read):
        completion = tracker.completion
        result = _moved(session) if ids else SessionOpResult(tokens_read=item.session.tokens_read)
        result.completion = Choice(completion.text, completion.tokens, completion.finish_reason or "length")
        results.append(result)
    return results
