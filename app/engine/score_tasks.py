"""Score work inside a worker: the texts of several requests scored together, per model, in
chunks sorted by length or, for n-best lists, through prefix trees."""
from __future__ import annotations

from app.engine.base import ScoredText
from app.engine.lm_tasks import encode_score_input, to_scored_text
from app.engine.messages import JobError, JobResult, TaskJob
from models.prefix_scoring import shares_prefixes
from models.registry import SCORE
from models.sampling import InvalidParameter

TREE_CHUNK_FACTOR = 8


def run_score_batch(models: dict, jobs: list[TaskJob], emit, config) -> list[int]:
    """Score the sequences of several requests together: all sequences of a model sorted by
    length (less padding) and run in chunks of the score task's batch size. Returns the batch
    sizes used."""
    limits, max_batch_size = config.limits, config.batching[SCORE].max_items
    batch_sizes: list[int] = []
    by_model: dict[str, list[tuple[TaskJob, list]]] = {}
    for job in jobs:
        loaded = models[job.request.model_id]
        try:
            encoded = encode_score_input(loaded, job.request, limits)
        except InvalidParameter as error:
            emit(JobError(job.request_id, "invalid", str(error), error.param))
            continue
        by_model.setdefault(job.request.model_id, []).append((job, encoded))
    for model_id, items in by_model.items():
        loaded = models[model_id]
        flat = [(job_index, item_index, item) for job_index, (_, encoded) in enumerate(items) for item_index, item in enumerate(encoded)]
        # Sequences sharing prefixes (n-best lists) go together so each chunk scores them
        # through one prefix tree; others by length, for the least padding.
        sharing = shares_prefixes([entry[2].ids for entry in flat])
        flat.sort(key=(lambda entry: entry[2].ids) if sharing else (lambda entry: len(entry[2].ids)))
        # A tree runs only the distinct prefixes, and more lists in one tree make its per-depth
        # batches fuller.
        chunk_size = max_batch_size * TREE_CHUNK_FACTOR if sharing else max_batch_size
        results: list[list[ScoredText | None]] = [[None] * len(encoded) for _, encoded in items]
        for start in range(0, len(flat), chunk_size):
            chunk = flat[start : start + chunk_size]
            batch_sizes.append(len(chunk))
            # Alternatives need every position's whole distribution (the flat pass, not the
            # prefix tree), so the texts that ask for them are scored apart, with the most any asks.
            asks = [bool(items[job_index][0].request.top_logprobs) for job_index, _, _ in chunk]
            for wants_alternatives in (False, True):
                part = [entry for entry, asked in zip(chunk, asks) if asked == wants_alternatives]
                if not part:
                    continue
                requests = [items[job_index][0].request for job_index, _, _ in part]
                scored = loaded.score_encoded([entry[2] for entry in part], [r.unknown_words for r in requests],
                                              max(r.top_logprobs for r in requests))
                for (job_index, item_index, _), request, result in zip(part, requests, scored):
                    text = request.texts[item_index] if request.texts else None
                    results[job_index][item_index] = to_scored_text(result, loaded.tokenizer, text, request.top_logprobs)
        for (job, _), job_results in zip(items, results):
            emit(JobResult(job.request_id, job_results))
    return batch_sizes
