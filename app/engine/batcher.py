"""Continuous (iteration-level) batching for generation.

An RNN's per-sequence state is fixed-size, so the slot table is just the batch dimension of
the state tensors: each live row owns one column of every (num_layers, B, hidden) tensor.
Every step runs one batched cell step for all live rows; finished or aborted rows leave and
waiting rows join (their prompts prefilled together) between steps.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import torch

from app.engine.lm_tasks import TokenLimits, encode_prompt
from app.engine.messages import ChoiceFinished, GenerateJob, JobError, PromptInfo, TokenEvent
from app.engine.prompt_cache import CachedState, PromptStateCache
from models.checkpoint import LoadedLanguageModel
from models.decode_loop import choose_tokens, settle_rows
from models.generation import CompletionTracker, GenerationBatch, prefill
from models.sampling import STRATEGIES, BatchSampler, InvalidParameter

logger = logging.getLogger(__name__)


@dataclass
class Row:
    request_id: str
    choice: int
    prompt_ids: list[int]
    tracker: CompletionTracker
    logprobs: int | None
    stream: bool
    submitted_at: float
    first_token_at: float | None = None
    aborted: bool = False
    prompt_left: int = 0  # prompt tokens still to feed through the decode step (see _admit)

    @property
    def prompt_read(self) -> bool:
        """Whether the row has read its whole prompt (and so samples a token each step)."""
        return self.prompt_left == 0

    @property
    def reports_tokens(self) -> bool:
        return self.stream or self.logprobs is not None

    def finished_event(self) -> ChoiceFinished:
        completion = self.tracker.completion
        now = time.monotonic()
        first = self.first_token_at or now
        count = len(completion.token_ids)
        return ChoiceFinished(
            self.request_id, self.choice, completion.finish_reason, completion.text, completion.tokens,
            first_token_s=first - self.submitted_at, per_token_s=(now - first) / (count - 1) if count > 1 else None,
        )


class ContinuousBatcher:
    """The generation slot table of one model."""

    def __init__(self, loaded: LoadedLanguageModel, max_batch_size: int, limits: TokenLimits, prompt_cache_bytes: int = 0) -> None:
        self.loaded, self.max_batch_size, self.limits = loaded, max_batch_size, limits
        self.prompt_cache = PromptStateCache(prompt_cache_bytes)
        # Prompt tokens that joining rows took from the cache or read with the model, since the
        # worker last collected them for the metrics.
        self.prompt_tokens = {"cache": 0, "model": 0}
        self.device = loaded.model.embedding.weight.device
        self.waiting: deque[Row] = deque()
        self.rows: list[Row] = []
        self.batch: GenerationBatch | None = None  # row i of the batch is self.rows[i]

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    def submit(self, job: GenerateJob, emit) -> None:
        try:
            if any(params.strategy not in STRATEGIES for params in job.params):
                raise InvalidParameter("strategy", f"language models generate with {', '.join(STRATEGIES)}")
            encoded = encode_prompt(self.loaded, job.prompt, self.limits)
        except InvalidParameter as error:
            emit(JobError(job.request_id, "invalid", str(error), error.param))
            return
        emit(PromptInfo(job.request_id, len(encoded.tokens)))
        now = time.monotonic()
        for choice, params in enumerate(job.params):
            tracker = CompletionTracker(params, self.loaded.vocab, self.loaded.tokenizer, incremental_text=job.stream or job.logprobs is not None,
                                        context=encoded.tokens)
            row = Row(job.request_id, choice, encoded.ids, tracker, job.logprobs, job.stream, now)
            if params.max_tokens == 0:
                emit(ChoiceFinished(job.request_id, choice, "length", "", []))
            else:
                self.waiting.append(row)

    def take_prompt_tokens(self) -> dict[str, int]:
        """Prompt tokens taken from the cache and read with the model since the last call."""
        counts, self.prompt_tokens = self.prompt_tokens, {"cache": 0, "model": 0}
        return counts

    def abort(self, request_id: str) -> None:
        self.waiting = deque(r for r in self.waiting if r.request_id != request_id)
        for row in self.rows:
            if row.request_id == request_id:
                row.aborted = True

    def _admit(self, emit) -> None:
        """Waiting rows join, each from the longest prefix of its prompt the prompt cache holds
        (`app.engine.prompt_cache`); what is left of the prompt is read one of two ways. When
        rows are already running, a short rest of a request that waits for its whole answer is
        fed through the shared decode step one token per step: its cost is a row of a step that
        runs anyway, where a separate prefill call costs milliseconds of set-up every time a
        request arrives. Streamed requests, long rests, and any prompt when nothing is running,
        are prefilled in one packed call: a stream's first token then comes after one call
        instead of one step per prompt token, and the first token is what a streaming client
        waits for (docs/benchmarks/peers.md measures it)."""
        joining: list[Row] = []
        while self.waiting and len(self.rows) + len(joining) < self.max_batch_size:
            joining.append(self.waiting.popleft())
        if not joining:
            return
        cached_whole, fed_through_steps, prefilled = [], [], []
        for row in joining:
            start = self.prompt_cache.longest_prefix(row.prompt_ids)
            left = len(row.prompt_ids) - (start.length if start else 0)
            self.prompt_tokens["cache"] += len(row.prompt_ids) - left
            if not left:
                cached_whole.append((row, start))
            elif self.rows and left <= STEP_PREFILL_MAX_TOKENS and not row.stream:
                fed_through_steps.append((row, start))
            else:
                prefilled.append((row, start))
        for group, join in ((cached_whole, self._resume), (prefilled, self._prefill), (fed_through_steps, self._feed)):
            if group:
                self._join_isolated(group, join, emit)

    def _join_isolated(self, group: list[tuple[Row, CachedState | None]], join, emit) -> None:
        """Join `group` together; when that raises, each row on its own, so a row that cannot
        join fails its request alone."""
        try:
            join(group)
        except Exception:  # noqa: BLE001 - isolated below, row by row
            for item in group:
                try:
                    join([item])
                except Exception as error:  # noqa: BLE001 - this row's request fails, the others join
                    self.fail_request(item[0].request_id, error, emit)

    def _resume(self, ready: list[tuple[Row, CachedState | None]]) -> None:
        """Rows whose whole prompts the cache held: they start sampling at once."""
        rows = [row for row, _ in ready]
        hidden = torch.cat([start.hidden for _, start in ready])
        self._join(rows, GenerationBatch.resumed(self.loaded.model, self._start_state(ready), hidden, self._sampler(rows)))

    def _feed(self, fed: list[tuple[Row, CachedState | None]]) -> None:
        """Rows whose prompt rests are read through the running batch's decode steps."""
        rows = [row for row, _ in fed]
        width = self.batch.scores.hidden.size(1)
        batch = GenerationBatch.feeding_prompts(self.loaded.model, self._start_state(fed), self._sampler(rows), width)
        for row, start in fed:
            row.prompt_left = len(row.prompt_ids) - (start.length if start else 0)
            self.prompt_tokens["model"] += row.prompt_left
        self._join(rows, batch)

    def _prefill(self, joining: list[tuple[Row, CachedState | None]]) -> None:
        """Read the rest of each prompt in one packed call. Rows with the same prompt (a
        request's choices) read it once; every prompt read is cached."""
        position: dict[tuple[int, ...], int] = {}  # prompt -> its column in the packed call
        first_rows: list[int] = []  # the first row of each prompt
        for index, (row, _) in enumerate(joining):
            if position.setdefault(tuple(row.prompt_ids), len(first_rows)) == len(first_rows):
                first_rows.append(index)
        distinct = [joining[index] for index in first_rows]
        rests = [row.prompt_ids[start.length if start else 0 :] for row, start in distinct]
        self.prompt_tokens["model"] += sum(len(rest) for rest in rests)
        scores, state = prefill(self.loaded.model, rests, self._start_state(distinct))
        rows = [row for row, _ in joining]
        if len(distinct) < len(rows):
            columns = torch.tensor([position[tuple(row.prompt_ids)] for row in rows], device=self.device)
            state, scores = tuple(s[:, columns] for s in state), scores.filter(columns)
        batch = GenerationBatch(self.loaded.model, state, scores, self._sampler(rows))
        for index in first_rows:
            self.prompt_cache.put(rows[index].prompt_ids, *batch.row_state(index))
        self._join(rows, batch)

    def _start_state(self, joining: list[tuple[Row, CachedState | None]]) -> tuple[torch.Tensor, ...]:
        """The joining rows' states side by side: each the cached one, or the initial state."""
        initial = self.loaded.model.init_state(1, self.device)
        return tuple(torch.cat([start.state[i] if start else initial[i] for _, start in joining], dim=1) for i in range(len(initial)))

    def _sampler(self, rows: list[Row]) -> BatchSampler:
        vocab = self.loaded.vocab
        return BatchSampler([r.tracker.params for r in rows], len(vocab), vocab.unk_id, vocab.eos_id, self.device)

    def _join(self, rows: list[Row], batch: GenerationBatch) -> None:
        self.batch = self.batch.concatenate(batch) if self.rows else batch
        self.rows.extend(rows)

    def step(self, emit) -> int:
        """Admit waiting rows, then one decode step (`models.decode_loop`) for every live row:
        rows still reading a prompt through the steps take their next prompt token, the others
        a sampled one, reported through `emit`. Returns the batch size of this step (0 when
        idle). An exception in one row (choosing, detokenizing, advancing) fails that row's
        request alone; the other rows carry on with the tokens they would have had alone."""
        self._admit(emit)
        if not self.rows:
            return 0
        batch_size = len(self.rows)
        choice = self._isolated(lambda batch, rows: choose_tokens(
            batch, [len(r.tracker.completion.token_ids) for r in rows], [r.prompt_read for r in rows],
            with_logprobs=any(r.logprobs is not None and r.prompt_read for r in rows)), emit)
        if choice is None:
            return batch_size
        chosen, logprobs = choice
        read: list[Row] = []  # rows whose prompts this step finishes reading
        now = time.monotonic()

        def take(index: int, token_id: int, row_logprobs: torch.Tensor | None) -> int | None:
            row = self.rows[index]
            if row.aborted:
                return None
            if not row.prompt_read:  # this step's input is its next prompt token
                row.prompt_left -= 1
                if not row.prompt_left:
                    read.append(row)
                return row.prompt_ids[len(row.prompt_ids) - row.prompt_left - 1]
            return None if self._record(index, row, token_id, row_logprobs, now, emit) else token_id

        keep, inputs = settle_rows(chosen, logprobs, take,
                                   on_error=lambda index, error: self.fail_request(self.rows[index].request_id, error, emit))
        # A request failed above may have rows that were kept before it failed.
        next_inputs = {id(self.rows[index]): token for index, token in zip(keep, inputs) if not self.rows[index].aborted}
        if len(next_inputs) < len(self.rows):
            self._keep([index for index, row in enumerate(self.rows) if id(row) in next_inputs])
            if not self.rows:
                return batch_size
        self._isolated(lambda batch, rows: batch.advance(torch.tensor([next_inputs[id(r)] for r in rows], device=self.device)), emit)
        if read and self.rows:
            position = {id(row): index for index, row in enumerate(self.rows)}
            for row in read:
                if id(row) in position:
                    self.prompt_cache.put(row.prompt_ids, *self.batch.row_state(position[id(row)]))
        return batch_size

    def _record(self, index: int, row: Row, token_id: int, logprobs: torch.Tensor | None, now: float, emit) -> bool:
        """Add a sampled token to its row and emit what it produced; True when the row finished."""
        tokens = self.loaded.vocab.tokens
        completion = row.tracker.completion
        count_before = len(completion.token_ids)
        delta = row.tracker.add(token_id)
        if row.first_token_at is None:
            row.first_token_at = now
        if row.reports_tokens and len(completion.token_ids) > count_before:
            logprob, top = None, None
            if logprobs is not None and row.logprobs is not None:
                logprob = float(logprobs[token_id])
                if row.logprobs > 0:
                    values, ids = logprobs.topk(row.logprobs)
                    top = {tokens[i]: round(float(v), 6) for v, i in zip(values.tolist(), ids.tolist())}
            emit(TokenEvent(row.request_id, row.choice, tokens[token_id], delta, logprob, top, row.tracker.last_offset))
        if not row.tracker.finished:
            return False
        emit(row.finished_event())
        # Its state has read the prompt and every token before this one: a next prompt
        # that repeats them (a conversation's next turn) starts here.
        if len(row.prompt_ids) + count_before <= self.limits.max_prompt_tokens:
            self.prompt_cache.put(row.prompt_ids + completion.token_ids[:count_before], *self.batch.row_state(index))
        return True

    def _keep(self, keep: list[int]) -> None:
        """Only the rows `keep` (indices into the current rows) stay."""
        self.rows = [self.rows[i] for i in keep]
        self.batch = self.batch.filter(keep) if keep else None

    def _isolated(self, attempt, emit):
        """`attempt(batch, rows)` on the whole batch. When it raises, it is tried on each row
        alone (a filtered copy: the batch and its random streams stay as they were) to find the
        rows it fails for; their requests fail, the rest run `attempt` again without them. When
        no single row fails, the fault is the batch's and every request in it fails. Returns
        what `attempt` returned, or None when no row is left."""
        try:
            return attempt(self.batch, self.rows)
        except Exception as batch_error:  # noqa: BLE001 - isolated below, row by row
            failing: list[int] = []
            for index, row in enumerate(self.rows):
                try:
                    attempt(self.batch.filter([index]), [row])
                except Exception as error:  # noqa: BLE001 - this row's request fails
                    failing.append(index)
                    self.fail_request(row.request_id, error, emit)
            if not failing:
                for row in self.rows:
                    self.fail_request(row.request_id, batch_error, emit)
            self._keep([index for index, row in enumerate(self.rows) if not row.aborted])
            if not self.rows:
                return None
            return attempt(self.batch, self.rows)

    def fail_request(self, request_id: str, error: BaseException, emit) -> None:
        """End a request that raised on this worker: logged with its id, a clear error for its
        client, its rows leave at the next step and its waiting rows go now."""
        if any(row.request_id == request_id and row.aborted for row in self.rows):
            return  # already failed (another of its choices raised first)
        logger.error("request %s failed on this worker: %s: %s", request_id, type(error).__name__, error, exc_info=error)
        emit(JobError(request_id, "failed", f"this request failed while generating ({type(error).__name__}: {error}); "
                                            f"other requests are unaffected (request id {request_id})"))
        self.abort(request_id)

    def fail_all(self, error: BaseException, emit) -> None:
        """Fail every request this batcher holds and start empty: the last resort when a step
        raised outside any one row's work."""
        for request_id in dict.fromkeys(row.request_id for row in (*self.rows, *self.waiting)):
            self.fail_request(request_id, error, emit)
        self.rows, self.waiting, self.batch = [], deque(), None


# Prompts up to this many tokens join a running batch through its decode steps (ContinuousBatcher._admit).
STEP_PREFILL_MAX_TOKENS = 16
