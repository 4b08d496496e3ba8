"""Lattice work inside a worker: the lattices of several requests rescored together, per model
and way of scoring unknown words, so that each layer of all their expansions is one batch for
the model (`models.lattice_rescoring.rescore_lattices`)."""
from __future__ import annotations

from dataclasses import dataclass

from app.engine.messages import JobError, JobResult, TaskJob
from models.lattice import Lattice
from models.lattice_lm import word_scorer
from models.lattice_rescoring import ExpansionOptions, ExpansionTooLarge, LatticeWeights, rescore_lattices


@dataclass
class LatticeInput:
    model_id: str
    lattices: list[Lattice]  # parsed and checked by the route
    weights: LatticeWeights
    options: ExpansionOptions
    unknown_words: str = "spell"


def count_lattices(request: LatticeInput) -> int:
    return len(request.lattices)


def run_lattice_batch(models: dict, jobs: list[TaskJob], emit, config=None) -> list[int]:
    """Answers each job with its lattices' `RescoredLattice`s in order, or, when one needs more
    expanded states than allowed, with an error naming it. Returns the batch sizes (lattices)."""
    sizes = []
    groups: dict[tuple[str, str], list[TaskJob]] = {}
    for job in jobs:
        groups.setdefault((job.request.model_id, job.request.unknown_words), []).append(job)
    for (model_id, unknown_words), group in groups.items():
        items = [(job, lattice) for job in group for lattice in job.request.lattices]
        results = rescore_lattices([lattice for _, lattice in items], word_scorer(models[model_id], unknown_words),
                                   [job.request.weights for job, _ in items], [job.request.options for job, _ in items])
        sizes.append(len(items))
        position = 0
        for job in group:
            mine = results[position : position + len(job.request.lattices)]
            position += len(mine)
            failed = next((index for index, result in enumerate(mine) if isinstance(result, ExpansionTooLarge)), None)
            if failed is None:
                emit(JobResult(job.request_id, mine))
            else:
                emit(JobError(job.request_id, "invalid", f"lattices.{failed}: {mine[failed]}", f"lattices.{failed}"))
    return sizes
