r"""Scoring throughput of each language model on the CPU: tokens scored per second by the code
behind /v1/score, one sentence at a time (the baseline) and in batches of --batch-size
sentences (what the server's dynamic batching does), measured in the same run.

    .venv/bin/python -m bench.score_speed weights/wikitext2-lstm runs/ngram/wikitext2-kn5 \
        --data ../shared/data/wikitext-2/test.txt

Sentences are the first --sentences non-empty lines of --data (each scored from the start
token through the end token, as the service does); a char model scores the same lines.
`--precisions fp32 int8` measures each recurrent model at each precision (`models.quantization`;
n-gram models have one).
Prints a table, writes bench/results/score-cpu.{md,json,png}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from models.quantization import FP32, PRECISIONS
from models.registry import MODEL_TYPES, load_model
from training.cli import parser_for

RESULTS = Path(__file__).resolve().parent / "results"


def sentences_from(path: Path, count: int, max_chars: int) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line[:max_chars] for line in lines if line and not line.startswith("=")][:count]


def tokens_per_second(loaded, encoded: list[list[int]], batch_size: int, min_seconds: float) -> float:
    """Tokens scored per second over whole passes through the sentences (at least min_seconds)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # as the server sorts by length
    scored, started = 0, time.perf_counter()
    while True:
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            loaded.score(batch)
            scored += sum(len(ids) - 1 for ids in batch)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return scored / elapsed


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("models", type=Path, nargs="+", help="model directories (recurrent or n-gram)")
    parser.add_argument("--data", type=Path, required=True, help="text file with one sentence or paragraph per line")
    parser.add_argument("--sentences", type=int, default=256, help="lines of --data scored")
    parser.add_argument("--max-chars", type=int, default=400, help="longer lines are cut to this many characters")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch in the batched measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum measuring time per setting")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=[FP32],
                        help="what each recurrent model computes in, each measured in the same run")
    parser.add_argument("--output", default="score-cpu", help="name of the result files in bench/results/")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    texts = sentences_from(args.data, args.sentences, args.max_chars)
    rows = []
    runs = [(directory, precision) for directory in args.models for precision in args.precisions]
    for directory, precision in runs:
        loaded = load_model(directory, "cpu")
        if precision != FP32:
            if not MODEL_TYPES[loaded.model_type].quantizable:
                continue  # one precision only: measured in the fp32 run
            loaded = load_model(directory, "cpu", precision)
        encoded = [loaded.encode_text(text, add_start=True, add_end=True).ids for text in texts]
        tokens_per_pass = sum(len(ids) - 1 for ids in encoded)
        loaded.score(encoded[:4])  # warm-up
        single = tokens_per_second(loaded, encoded, 1, args.seconds)
        batched = tokens_per_second(loaded, encoded, args.batch_size, args.seconds)
        rows.append({"model": loaded.model_id, "type": loaded.model_type, "precision": loaded.precision, "tokens_per_pass": tokens_per_pass,
                     "one_at_a_time_tok_s": round(single), "batched_tok_s": round(batched), "ratio": round(batched / single, 2)})
        print(rows[-1], flush=True)

    header = f"| model | precision | one sentence at a time (tok/s) | batches of {args.batch_size} (tok/s) | batched ÷ one |\n|---|---|---:|---:|---:|\n"
    table = header + "".join(f"| {r['model']} | {r['precision']} | {r['one_at_a_time_tok_s']:,} | {r['batched_tok_s']:,} | {r['ratio']}× |\n" for r in rows)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {len(texts)} sentences of {args.data.name}"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.output}.md").write_text(table + f"\n{machine}\n")
    (RESULTS / f"{args.output}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    positions = range(len(rows))
    axis.bar([p - 0.2 for p in positions], [r["one_at_a_time_tok_s"] for r in rows], width=0.4, label="one at a time")
    axis.bar([p + 0.2 for p in positions], [r["batched_tok_s"] for r in rows], width=0.4, label=f"batches of {args.batch_size}")
    axis.set_xticks(list(positions), [f"{r['model']} ({r['precision']})" for r in rows], rotation=15)
    axis.set(ylabel="tokens scored per second", yscale="log", title="Scoring throughput on the CPU")
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / f"{args.output}.png", dpi=100)
    plt.close(figure)
    return rows


if __name__ == "__main__":
    main()
