"""N-best scoring through a prefix tree against flat scoring, measured in the same run.

    .venv/bin/python -m bench.prefix_scoring weights/wikitext2-lstm \\
        --nbest runs/nbest/ptb-test.jsonl runs/nbest/ptb-test-100best.jsonl

Each utterance's n-best list is scored from the start token through the end token, one list
per call (one /v1/rescore request alone) and --lists-per-call lists per call (concurrent
requests, which the engine batches into one tree). First flat (every hypothesis run whole, the
engine's way: sorted by length, in batches of --batch-size, `models.scoring.score_sequences`),
then through the prefix tree (`models.prefix_scoring`), --repeats passes each in alternation;
an n-gram model's shared scoring looks each distinct history window up once
(`NGramModel.score_sequences`). Hypotheses/s and tokens/s are the medians. The two give the
same numbers (checked here too). Prints a table; writes bench/results/prefix-scoring.{md,json,png}.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from models.prefix_scoring import distinct_prefixes, score_prefix_tree
from models.registry import load_model
from models.scoring import score_sequences
from training.cli import parser_for, resolve_model, run_cli
from training.nbest_files import read_nbest

RESULTS = Path(__file__).resolve().parent / "results"


def timed(function, lists) -> float:
    started = time.perf_counter()
    for sequences in lists:
        function(sequences)
    return time.perf_counter() - started


def flat_in_batches(model, sequences: list[list[int]], batch_size: int) -> list[list[float]]:
    """The engine's flat path: sorted by length (least padding), in batches of `batch_size`."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    values: list[list[float]] = [[] for _ in sequences]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for i, result in zip(batch, score_sequences(model, [sequences[i] for i in batch])):
            values[i] = result.token_logprobs
    return values


def scorers(loaded, batch_size: int):
    """(flat, shared) scoring functions: sequences -> per-token log-probabilities. For an n-gram
    model the shared one looks each distinct history window up once (its cache of contexts)."""
    if loaded.model_type == "ngram":
        model = loaded.model
        return (lambda seqs: [model.token_logprobs(np.asarray(s), context=1).tolist() for s in seqs],
                lambda seqs: [v.tolist() for v in model.score_sequences(seqs)])
    return (lambda seqs: flat_in_batches(loaded.model, seqs, batch_size),
            lambda seqs: [r.token_logprobs for r in score_prefix_tree(loaded.model, seqs)])


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("models", nargs="+", type=resolve_model, help="recurrent or n-gram language models")
    parser.add_argument("--nbest", type=Path, nargs="+", required=True, help="n-best files (JSON lines)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of each way of scoring (the median is reported)")
    parser.add_argument("--lists-per-call", type=int, nargs="+", default=[1, 4],
                        help="utterances scored in one call: 1 is one request alone, more are concurrent requests the engine batches")
    parser.add_argument("--batch-size", type=int, default=64, help="flat scoring's batch (the engine's RNNSERVE_SCORE_MAX_BATCH_SIZE)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for directory in args.models:
        loaded = load_model(directory, "cpu")
        for path in args.nbest:
            utterances = [[loaded.encode_text(h.text, True, True).ids for h in n.hypotheses] for n in read_nbest(path)]
            flat_scores, shared_scores = scorers(loaded, args.batch_size)
            for sequences in utterances[:5]:  # the same numbers
                for f, t in zip(flat_scores(sequences), shared_scores(sequences)):
                    assert max(abs(a - b) for a, b in zip(f, t)) < 1e-4
            for per_call in args.lists_per_call:
                if loaded.model_type == "ngram" and per_call > 1:
                    continue  # the n-gram's cost does not depend on batching
                lists = [sum(utterances[i : i + per_call], []) for i in range(0, len(utterances), per_call)]
                hypotheses = sum(len(l) for l in lists)
                tokens = sum(len(s) - 1 for l in lists for s in l)
                nodes = sum(distinct_prefixes(u) for u in utterances)
                flat, tree = [], []
                for _ in range(args.repeats):
                    flat.append(timed(flat_scores, lists))
                    tree.append(timed(shared_scores, lists))
                flat_s, tree_s = statistics.median(flat), statistics.median(tree)
                row = {"model": loaded.model_id, "nbest": path.name, "utterances": len(utterances), "lists_per_call": per_call,
                       "hypotheses_per_list": round(hypotheses / len(utterances), 1), "tokens": tokens,
                       "distinct_prefixes": nodes, "flat_hyp_per_s": round(hypotheses / flat_s, 1),
                       "tree_hyp_per_s": round(hypotheses / tree_s, 1), "flat_tok_per_s": round(tokens / flat_s),
                       "tree_tok_per_s": round(tokens / tree_s), "tree_over_flat": round(flat_s / tree_s, 2)}
                rows.append(row)
                print(row, flush=True)
    header = (f"prefix-tree against flat n-best scoring (flat: sorted by length, batches of {args.batch_size}), "
              f"median of {args.repeats}, {torch.get_num_threads()} threads, {platform.machine()}")
    lines = [header, "", "| model | n-best file | lists | lists per call | hypotheses per list | tokens | distinct prefixes | flat hyp/s | tree hyp/s | flat tok/s | tree tok/s | tree ÷ flat |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['nbest']} | {r['utterances']} | {r['lists_per_call']} | {r['hypotheses_per_list']} | {r['tokens']:,} | "
                     f"{r['distinct_prefixes']:,} | {r['flat_hyp_per_s']:,} | {r['tree_hyp_per_s']:,} | {r['flat_tok_per_s']:,} | "
                     f"{r['tree_tok_per_s']:,} | {r['tree_over_flat']}× |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prefix-scoring.md").write_text(table + "\n")
    (RESULTS / "prefix-scoring.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, RESULTS / "prefix-scoring.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['nbest']}\n{r['lists_per_call']} per call" for r in rows]
    x = range(len(rows))
    figure, axis = plt.subplots(figsize=(max(6, 2.2 * len(rows)), 4))
    axis.bar([i - 0.2 for i in x], [r["flat_hyp_per_s"] for r in rows], 0.4, label="flat")
    axis.bar([i + 0.2 for i in x], [r["tree_hyp_per_s"] for r in rows], 0.4, label="prefix tree")
    axis.set_xticks(list(x), labels, fontsize=8)
    axis.set_ylabel("hypotheses scored per second")
    axis.legend()
    axis.set_title("n-best scoring: prefix tree against flat")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    run_cli(main)
