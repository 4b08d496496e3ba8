"""Minimal-pair accuracy: how often a model gives the grammatical sentence of a pair the higher
total log-probability (BLiMP's measure).

    python -m training.evaluate_pairs weights/wikitext2-lstm pairs.jsonl

FILE.jsonl holds one object per line with "sentence_good" and "sentence_bad" (other fields,
such as BLiMP's "UID" or "phenomenon", group the results when named by --group-by). Each
sentence is tokenized as the service tokenizes a request and scored from the model's start
token through an end token, so a sentence that stops early pays for it. A tie counts as a miss.
A word outside a word model's vocabulary is scored with the model's spelling model (as the
service does), unless --unknown-words unk.
Works with recurrent and n-gram models alike.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from models.artifacts import CheckpointError
from models.quantization import PRECISIONS
from models.registry import is_language_model, load_model
from training.cli import parser_for, resolve_model, run_cli

BATCH = 64


class PairsFileError(ValueError):
    pass


def read_pairs(path: Path) -> list[dict]:
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
            except json.JSONDecodeError as error:
                raise PairsFileError(f"{path}:{number}: not JSON ({error.msg})") from error
            if not isinstance(pair, dict) or not all(isinstance(pair.get(k), str) and pair[k].strip() for k in ("sentence_good", "sentence_bad")):
                raise PairsFileError(f"{path}:{number}: needs non-empty strings 'sentence_good' and 'sentence_bad'")
            pairs.append(pair)
    if not pairs:
        raise PairsFileError(f"{path}: no pairs")
    return pairs


def total_logprobs(loaded, sentences: list[str], add_end: bool = True, unknown_words: str = "spell") -> list[float]:
    totals = []
    for start in range(0, len(sentences), BATCH):
        encoded = [loaded.encode_text(s, add_start=True, add_end=add_end) for s in sentences[start : start + BATCH]]
        totals.extend(result.score.logprob for result in loaded.score_encoded(encoded, unknown_words))
    return totals


def evaluate(loaded, pairs: list[dict], group_by: str | None = None, add_end: bool = True, unknown_words: str = "spell") -> dict:
    good = total_logprobs(loaded, [p["sentence_good"] for p in pairs], add_end, unknown_words)
    bad = total_logprobs(loaded, [p["sentence_bad"] for p in pairs], add_end, unknown_words)
    correct = [g > b for g, b in zip(good, bad)]
    spelled = (unknown_words == "spell" and getattr(loaded, "spelling", None) is not None
               and loaded.tokenizer.spells_unknown_words)
    result = {"model": loaded.model_id, "precision": loaded.precision, "unknown_words": "spell" if spelled else "unk",
              "pairs": len(pairs), "correct": sum(correct), "accuracy": round(sum(correct) / len(pairs), 4)}
    if group_by:
        groups: dict[str, list[bool]] = defaultdict(list)
        for pair, hit in zip(pairs, correct):
            groups[str(pair.get(group_by, "?"))].append(hit)
        result["by_" + group_by] = {name: {"pairs": len(hits), "accuracy": round(sum(hits) / len(hits), 4)} for name, hits in sorted(groups.items())}
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("checkpoint", type=resolve_model, help="model directory or model id (recurrent or n-gram)")
    parser.add_argument("pairs", type=Path, help="JSON lines with sentence_good / sentence_bad")
    parser.add_argument("--group-by", default=None,
                        help="a field of the pairs to report accuracy by, e.g. UID (default: one overall accuracy)")
    parser.add_argument("--no-end-token", action="store_true", help="score sentences without the end token")
    parser.add_argument("--unknown-words", choices=["spell", "unk"], default="spell",
                        help="score a word outside the vocabulary with the spelling model (spell) or as <unk> alone (unk)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="what a recurrent model computes in (int8: recurrent and output layers, CPU only)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    loaded = load_model(args.checkpoint, args.device, args.precision)
    if not is_language_model(loaded.model_type):
        raise CheckpointError(f"{args.checkpoint} is a {loaded.model_type}, not a language model")
    result = evaluate(loaded, read_pairs(args.pairs), args.group_by, add_end=not args.no_end_token, unknown_words=args.unknown_words)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run_cli(main)
