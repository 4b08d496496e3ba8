"""N-best files: JSON lines of `{"id", "reference"?, "hypotheses": [{"text", "acoustic_score"?,
"scores"?}], "context"?}` (natural-log acoustic scores; `scores` holds further named scores, the
same names on every hypothesis of the file), the format `training.make_nbest` writes and
`training.tune_rescoring` and `/v1/rescore` read."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


class NBestFileError(ValueError):
    """A line of an n-best file is not what the format says; the message names the line."""


@dataclass
class NBestHypothesis:
    text: str
    acoustic_score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # named scores


@dataclass
class NBestList:
    id: str
    hypotheses: list[NBestHypothesis]
    reference: str | None = None
    context: str | None = None
    extra: dict = field(default_factory=dict)


def is_finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def named_scores(hypothesis: dict, where: str) -> dict[str, float]:
    scores = hypothesis.get("scores", {})
    if not isinstance(scores, dict) or not all(isinstance(name, str) and name and is_finite_number(value)
                                               for name, value in scores.items()):
        raise NBestFileError(f"{where}: 'scores' must map names to finite numbers")
    return {name: float(value) for name, value in scores.items()}


def read_nbest(path: Path, need_reference: bool = False) -> list[NBestList]:
    lists: list[NBestList] = []
    names: set[str] | None = None  # the named scores of the file's first hypothesis
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise NBestFileError(f"{where}: not JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise NBestFileError(f"{where}: each line must be a JSON object")
            hypotheses = record.get("hypotheses")
            if not isinstance(hypotheses, list) or not hypotheses:
                raise NBestFileError(f"{where}: 'hypotheses' must be a non-empty list")
            parsed = []
            for index, hypothesis in enumerate(hypotheses):
                if not isinstance(hypothesis, dict) or not isinstance(hypothesis.get("text"), str):
                    raise NBestFileError(f"{where}: hypothesis {index} needs a 'text' string")
                score = hypothesis.get("acoustic_score")
                if score is not None and not is_finite_number(score):
                    raise NBestFileError(f"{where}: hypothesis {index}: 'acoustic_score' must be a finite number")
                scores = named_scores(hypothesis, f"{where}: hypothesis {index}")
                names = set(scores) if names is None else names
                if set(scores) != names:
                    raise NBestFileError(f"{where}: hypothesis {index}: 'scores' names {sorted(scores)}, the file's first "
                                         f"hypothesis {sorted(names)}; every hypothesis carries the same named scores")
                parsed.append(NBestHypothesis(hypothesis["text"], None if score is None else float(score), scores))
            if len({h.acoustic_score is None for h in parsed}) > 1:
                raise NBestFileError(f"{where}: give an acoustic_score for every hypothesis or for none")
            reference = record.get("reference")
            if reference is not None and not isinstance(reference, str):
                raise NBestFileError(f"{where}: 'reference' must be a string")
            if need_reference and reference is None:
                raise NBestFileError(f"{where}: tuning needs a 'reference' transcript on every line")
            context = record.get("context")
            if context is not None and not isinstance(context, str):
                raise NBestFileError(f"{where}: 'context' must be a string")
            identifier = record.get("id", f"line-{number}")
            lists.append(NBestList(str(identifier), parsed, reference, context,
                                   {k: v for k, v in record.items() if k not in ("id", "hypotheses", "reference", "context")}))
    if not lists:
        raise NBestFileError(f"{path}: no n-best lists")
    return lists
