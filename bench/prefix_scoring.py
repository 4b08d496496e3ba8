"""N-best scoring through a prefix tree against flat scoring, measured in the same run.

    .venv/bin/python -m bench.prefix_scoring weights/wikitext2-lstm \\
        --nbest runs/nbest/ptb-test.jsonl runs/nbest/ptb-test-100best.jsonl

Each utterance's n-best list is scored as one call (what one /v1/rescore request's hypotheses
become), from the start token through the end token, first flat (every hypothesis run whole,
`models.scoring.score_sequences`) then through the prefix tree (`models.prefix_scoring`), for
--repeats passes each in alternation; an n-gram model's shared scoring looks each distinct
history window up once (`NGramModel.score_sequences`); hypotheses/s and tokens/s are the medians. The two give
the same numbers (checked here too). Prints a table; writes bench/results/prefix-scoring.{md,json,png}.
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


def scorers(loaded):
    """(flat, shared) scoring functions: sequences -> per-token log-probabilities. For an n-gram
    model the shared one looks each distinct history window up once (its cache of contexts)."""
    if loaded.model_type == "ngram":
        model = loaded.model
        return (lambda seqs: [model.token_logprobs(np.asarray(s), context=1).tolist() for s in seqs],
                lambda seqs: [v.tolist() for v in model.score_sequences(seqs)])
    return (lambda seqs: [r.token_logprobs for r in score_sequences(loaded.model, seqs)],
            lambda seqs: [r.token_logprobs for r in score_prefix_tree(loaded.model, seqs)])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = parser_for(__doc__)
    parser.add_argument("models", nargs="+", type=resolve_model, help="recurrent or n-gram language models")
    parser.add_argument("--nbest", type=Path, nargs="+", required=True, help="n-best files (JSON lines)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for directory in args.models:
        loaded = load_model(directory, "cpu")
        for path in args.nbest:
            lists = [[loaded.encode_text(h.text, True, True).ids for h in n.hypotheses] for n in read_nbest(path)]
            hypotheses = sum(len(l) for l in lists)
            tokens = sum(len(s) - 1 for l in lists for s in l)
            nodes = sum(distinct_prefixes(l) for l in lists)
            flat_scores, shared_scores = scorers(loaded)
            for sequences in lists[:5]:  # the same numbers
                for f, t in zip(flat_scores(sequences), shared_scores(sequences)):
                    assert max(abs(a - b) for a, b in zip(f, t)) < 1e-4
            flat, tree = [], []
            for _ in range(args.repeats):
                flat.append(timed(flat_scores, lists))
                tree.append(timed(shared_scores, lists))
            flat_s, tree_s = statistics.median(flat), statistics.median(tree)
            row = {"model": loaded.model_id, "nbest": path.name, "utterances": len(lists),
                   "hypotheses_per_list": round(hypotheses / len(lists), 1), "tokens": tokens,
                   "distinct_prefixes": nodes, "flat_hyp_per_s": round(hypotheses / flat_s, 1),
                   "tree_hyp_per_s": round(hypotheses / tree_s, 1), "flat_tok_per_s": round(tokens / flat_s),
                   "tree_tok_per_s": round(tokens / tree_s), "tree_over_flat": round(flat_s / tree_s, 2)}
            rows.append(row)
            print(row, flush=True)
    header = (f"prefix-tree against flat n-best scoring, one call per utterance, median of {args.repeats}, "
              f"{torch.get_num_threads()} threads, {platform.machine()}")
    lines = [header, "", "| model | n-best file | lists | hypotheses per list | tokens | distinct prefixes | flat hyp/s | tree hyp/s | flat tok/s | tree tok/s | tree ÷ flat |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['nbest']} | {r['utterances']} | {r['hypotheses_per_list']} | {r['tokens']:,} | "
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

    labels = [f"{r['model']}\n{r['nbest']}" for r in rows]
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
