"""Lattice rescoring against scoring every path of the same lattice, measured in the same run.

    .venv/bin/python -m bench.lattice_rescoring wikitext2-lstm --nbest tests/data/nbest-ptb-dev-slice.jsonl

Each utterance's n-best list becomes a word graph with more paths than the list: the hypotheses
are aligned to the first one, the words every hypothesis shares there split them into regions,
and each region offers the different word sequences the hypotheses have in it, so a path may
take one hypothesis's words in one region and another's in the next (adjacent regions are
joined while the paths would exceed --max-paths). Acoustic scores are spread over the regions'
alternatives by least squares (minimum norm), so each original hypothesis keeps its own
acoustic score (exactly where the regions' parts can add up to every hypothesis's; the table's
header gives the largest difference) and the new paths get the sums of their parts.

Then, on the same lattices, with the same model and weights (natural logs, as /v1/rescore):
the recogniser's first hypothesis; the n-best list rescored; every path of the lattice scored
through the ordinary scorer (`score_encoded`: one call per lattice, which runs the prefix tree
for shared prefixes) and the best taken; and `models.lattice_rescoring` at each
--orders × --beams. A lattice word is one model token in every row (`/v1/score`'s `tokens`).
WER (jiwer, over all utterances) against the file's references; time is the median of
--repeats passes over all lattices, one call per lattice. Prints a table; writes
lattice-rescoring.{md,json,png} to bench/results/ (or --output-dir).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import jiwer
import numpy as np
import torch

from models.lattice import Lattice, Link, Node
from models.lattice_lm import word_scorer
from models.lattice_rescoring import ExpansionOptions, LatticeWeights, rescore_lattices
from models.registry import load_model
from training.cli import parser_for, resolve_model, run_cli
from training.nbest_files import read_nbest

RESULTS = Path(__file__).resolve().parent / "results"


def align(pivot: list[str], words: list[str]) -> list[tuple[int, str | None]]:
    """Levenshtein alignment of `words` to `pivot`: (slot, word) per operation, where slot 2p+1
    is pivot word p (a match, a substitution, or None for a deletion) and slot 2p is the gap
    before it (an insertion)."""
    rows, columns = len(pivot) + 1, len(words) + 1
    cost = np.zeros((rows, columns), dtype=np.int64)
    cost[:, 0] = np.arange(rows)
    cost[0, :] = np.arange(columns)
    for i in range(1, rows):
        for j in range(1, columns):
            cost[i, j] = min(cost[i - 1, j - 1] + (pivot[i - 1] != words[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    operations: list[tuple[int, str | None]] = []
    i, j = len(pivot), len(words)
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (pivot[i - 1] != words[j - 1]):
            operations.append((2 * (i - 1) + 1, words[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            operations.append((2 * (i - 1) + 1, None))
            i -= 1
        else:
            operations.append((2 * i, words[j - 1]))
            j -= 1
    return operations[::-1]


def regions_of(hypotheses: list[list[str]], max_paths: int) -> list[list[tuple[str, ...]]]:
    """Per region, each hypothesis's words in it (a shared word is a region of its own with one
    alternative), regions joined while the paths would exceed `max_paths`."""
    pivot = hypotheses[0]
    slots = 2 * len(pivot) + 1
    placed = []
    for words in hypotheses:
        by_slot: list[list[str]] = [[] for _ in range(slots)]
        for slot, word in align(pivot, words):
            if word is not None:
                by_slot[slot].append(word)
        placed.append(by_slot)
    shared = {2 * p + 1 for p in range(len(pivot)) if all(by_slot[2 * p + 1] == [pivot[p]] for by_slot in placed)}
    spans, current = [], []
    for slot in range(slots):
        if slot in shared:
            if current:
                spans.append(current)
            spans.append([slot])
            current = []
        else:
            current.append(slot)
    if current:
        spans.append(current)
    regions = [[tuple(w for slot in span for w in by_slot[slot]) for by_slot in placed] for span in spans]

    def paths(parts) -> int:
        return math.prod(len(set(part)) for part in parts)

    while paths(regions) > max_paths and len(regions) > 1:
        # Join the neighbours whose joining removes the most paths.
        joined = [[a + b for a, b in zip(regions[k], regions[k + 1])] for k in range(len(regions) - 1)]
        best = min(range(len(joined)), key=lambda k: paths(regions[:k] + [joined[k]] + regions[k + 2:]))
        regions = regions[:best] + [joined[best]] + regions[best + 2:]
    return regions


def word_graph(hypotheses: list[list[str]], acoustic: list[float], max_paths: int) -> Lattice:
    """The lattice of the regions' alternatives; a leading epsilon link carries the mean
    acoustic score, and each alternative its least-squares share of the rest."""
    regions = regions_of(hypotheses, max_paths)
    alternatives = [sorted(set(region), key=region.index) for region in regions]
    columns = {(r, alternative): index for index, (r, alternative)
               in enumerate((r, a) for r, options in enumerate(alternatives) for a in options)}
    design = np.zeros((len(hypotheses), len(columns)))
    for h in range(len(hypotheses)):
        for r, region in enumerate(regions):
            design[h, columns[(r, region[h])]] = 1.0
    mean = float(np.mean(acoustic))
    shares, *_ = np.linalg.lstsq(design, np.asarray(acoustic) - mean, rcond=None)
    nodes, links = [Node(None, None), Node(None, None)], [Link(0, 1, None, mean, 0.0, 0)]
    end = 1
    for r, options in enumerate(alternatives):
        start, end = end, len(nodes)
        nodes.append(Node(None, None))
        for alternative in options:
            share = float(shares[columns[(r, alternative)]])
            if not alternative:
                links.append(Link(start, end, None, share, 0.0, 0))
                continue
            previous = start
            for position, word in enumerate(alternative):
                target = end if position == len(alternative) - 1 else len(nodes)
                if target != end:
                    nodes.append(Node(None, None))
                links.append(Link(previous, target, word, share / len(alternative), 0.0, 0))
                previous = target
    return Lattice(nodes, links, 0, end)


def combined(acoustic: float, lm: float, words: int, weights: LatticeWeights) -> float:
    return weights.acoustic_weight * acoustic + weights.lm_weight * lm + weights.word_insertion_penalty * words


def score_paths(loaded, lattice: Lattice, weights: LatticeWeights) -> tuple[list[str], int]:
    """The best path of the lattice by scoring every path through the ordinary scorer."""
    paths = lattice.paths()
    words = [lattice.words_of(path) for path in paths]
    scored = loaded.score_encoded([loaded.encode_tokens(w, add_start=True, add_end=True) for w in words])
    totals = [combined(math.fsum(lattice.links[i].acoustic for i in path), s.score.logprob, len(w), weights)
              for path, w, s in zip(paths, words, scored)]
    best = max(range(len(paths)), key=totals.__getitem__)
    return words[best], len(paths)


def wer(references: list[str], chosen: list[list[str]]) -> float:
    return jiwer.wer(references, [" ".join(words) for words in chosen])


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("model", type=resolve_model, help="a recurrent or n-gram language model")
    parser.add_argument("--nbest", type=Path, required=True, help="an n-best file with references (JSON lines)")
    parser.add_argument("--acoustic-weight", type=float, default=1.0, help="multiplies the acoustic scores")
    parser.add_argument("--lm-weight", type=float, default=32.0, help="multiplies the model's log-probabilities")
    parser.add_argument("--word-insertion-penalty", type=float, default=-200.0, help="added per word")
    parser.add_argument("--max-paths", type=int, default=5000,
                        help="paths per lattice at most (an utterance's regions are joined beyond)")
    parser.add_argument("--joins", type=int, nargs="+", default=[1, 2],
                        help="utterances read in turn as one lattice (their paths multiply)")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 4, 1000],
                        help="max_ngram_order values of lattice rescoring (one beyond every path's length merges nothing)")
    parser.add_argument("--beams", type=float, nargs="+", default=[10.0, 50.0, math.inf],
                        help="beams of lattice rescoring (inf: no pruning)")
    parser.add_argument("--together-order", type=int, default=4, help="max_ngram_order of the row that rescores all lattices in one call")
    parser.add_argument("--together-beam", type=float, default=50.0, help="beam of the row that rescores all lattices in one call")
    parser.add_argument("--repeats", type=int, default=3, help="passes of each timed way (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the table, JSON and plot go")
    return parser


def concatenate(lattices: list[Lattice]) -> Lattice:
    """One lattice that reads the given ones in turn (an epsilon link joins each end to the next start)."""
    nodes: list[Node] = []
    links: list[Link] = []
    previous_end = None
    for lattice in lattices:
        offset = len(nodes)
        nodes += lattice.nodes
        links += [Link(k.start + offset, k.end + offset, k.word, k.acoustic, k.language, 0) for k in lattice.links]
        if previous_end is not None:
            links.append(Link(previous_end, lattice.start + offset, None, 0.0, 0.0, 0))
        previous_end = lattice.end + offset
    return Lattice(nodes, links, lattices[0].start, previous_end)


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, "cpu")
    weights = LatticeWeights(args.acoustic_weight, args.lm_weight, 0.0, args.word_insertion_penalty)
    lists = read_nbest(args.nbest, need_reference=True)
    hypotheses = [[h.text.split() for h in n.hypotheses] for n in lists]
    acoustic = [[h.acoustic_score or 0.0 for h in n.hypotheses] for n in lists]
    rows: list[dict] = []

    def row(method: str, references: list[str], chosen: list[list[str]], seconds: float | None, **extra) -> None:
        entry = {"method": method, "wer": round(wer(references, chosen), 4),
                 "seconds": None if seconds is None else round(seconds, 3), **extra}
        rows.append(entry)
        print(entry, flush=True)

    references = [n.reference for n in lists]
    row("first pass (the recogniser's best)", references, [h[0] for h in hypotheses], None, utterances_per_lattice="")

    def rescore_nbest() -> list[list[str]]:
        chosen = []
        for words, scores in zip(hypotheses, acoustic):
            scored = loaded.score_encoded([loaded.encode_tokens(w, add_start=True, add_end=True) for w in words])
            totals = [combined(a, s.score.logprob, len(w), weights) for w, a, s in zip(words, scores, scored)]
            chosen.append(words[max(range(len(words)), key=totals.__getitem__)])
        return chosen

    seconds, chosen = timed(rescore_nbest, args.repeats)
    row(f"{round(statistics.mean(len(h) for h in hypotheses))}-best lists rescored", references, chosen, seconds,
        utterances_per_lattice="", paths=sum(len(h) for h in hypotheses), tokens=sum(len(w) + 1 for h in hypotheses for w in h))
    headers = []
    for join in args.joins:
        # Utterances read in turn make one lattice: its paths multiply, its expansion adds up.
        per_utterance = max(max(len(h) for h in hypotheses), int(args.max_paths ** (1 / join)))
        graphs = [word_graph(h, a, per_utterance) for h, a in zip(hypotheses, acoustic)]
        groups = [range(i, min(i + join, len(lists))) for i in range(0, len(lists), join)]
        lattices = [concatenate([graphs[i] for i in group]) for group in groups]
        references = [" ".join(lists[i].reference for i in group) for group in groups]
        paths = [lattice.paths() for lattice in lattices]
        tokens = sum(len(lattice.words_of(p)) + 1 for lattice, found in zip(lattices, paths) for p in found)
        deviation = 0.0  # how far a hypothesis's path is from its own acoustic score (where regions cannot add up to it)
        for graph, words, scores in zip(graphs, hypotheses, acoustic):
            totals: dict[tuple, list[float]] = {}
            for path in graph.paths():
                totals.setdefault(tuple(graph.words_of(path)), []).append(math.fsum(graph.links[i].acoustic for i in path))
            deviation = max([deviation] + [min(abs(t - s) for t in totals[tuple(w)]) for w, s in zip(words, scores)])
        counts = [len(found) for found in paths]
        headers.append(f"{join} utterance{'s' if join > 1 else ''} per lattice: {len(lattices)} lattices of {min(counts)}–{max(counts)} "
                       f"paths ({sum(counts)} in all; a hypothesis's path is within {deviation:.2f} of its acoustic score)")
        common = {"utterances_per_lattice": join}
        seconds, scored = timed(lambda: [score_paths(loaded, lattice, weights) for lattice in lattices], args.repeats)
        row("every path scored, one call per lattice", references, [w for w, _ in scored], seconds, paths=sum(counts), tokens=tokens,
            **common)
        for order in args.orders:
            for beam in args.beams:
                options = ExpansionOptions(order, None if math.isinf(beam) else beam, 1)
                seconds, results = timed(lambda: [rescore_lattices([lattice], word_scorer(loaded), weights, options)[0]
                                                  for lattice in lattices], args.repeats)
                row(f"lattice rescoring, order {order}, beam {beam:g}, one call per lattice", references,
                    [r.nbest[0].words for r in results], seconds, expanded_states=sum(r.expanded_states for r in results),
                    pruned_states=sum(r.pruned_states for r in results), lm_queries=sum(r.lm_queries for r in results), **common)
        options = ExpansionOptions(args.together_order, None if math.isinf(args.together_beam) else args.together_beam, 1)
        seconds, results = timed(lambda: rescore_lattices(lattices, word_scorer(loaded), weights, options), args.repeats)
        row(f"lattice rescoring, order {args.together_order}, beam {args.together_beam:g}, all lattices in one call", references,
            [r.nbest[0].words for r in results], seconds, expanded_states=sum(r.expanded_states for r in results),
            pruned_states=sum(r.pruned_states for r in results), lm_queries=sum(r.lm_queries for r in results), **common)
        oracle = [min(found, key=lambda p, r=reference, l=lattice: jiwer.wer(r, " ".join(l.words_of(p))))
                  for lattice, found, reference in zip(lattices, paths, references)]
        row("lattice oracle (its best path)", references, [l.words_of(p) for l, p in zip(lattices, oracle)], None, **common)
    header = (f"{loaded.model_id} on {args.nbest.name} ({len(lists)} utterances); acoustic weight {args.acoustic_weight:g}, "
              f"LM weight {args.lm_weight:g}, word insertion penalty {args.word_insertion_penalty:g}; median of {args.repeats}, "
              f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}, {platform.machine()}. "
              + "; ".join(headers) + ".")
    lines = [header, "", "| utterances per lattice | method | WER | seconds | paths scored | tokens scored | expanded states "
                         "| pruned states | model queries |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [r["utterances_per_lattice"], r["method"], f"{r['wer']:.4f}", "" if r["seconds"] is None else f"{r['seconds']:.2f}"]
        cells += [f"{r[key]:,}" if key in r else "" for key in ("paths", "tokens", "expanded_states", "pruned_states", "lm_queries")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    table = "\n".join(lines)
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "lattice-rescoring.md").write_text(table + "\n")
    (args.output_dir / "lattice-rescoring.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    plot(rows, args.output_dir / "lattice-rescoring.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed_rows = [r for r in rows if r["seconds"] is not None]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, max(3, 0.35 * len(timed_rows) + 1)))
    labels = [r["method"] + (f" ({r['utterances_per_lattice']} utterances per lattice)" if r["utterances_per_lattice"] else "")
              for r in timed_rows]
    positions = range(len(timed_rows))
    left.barh(positions, [r["seconds"] for r in timed_rows])
    left.set_yticks(list(positions), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("seconds for all lattices")
    right.barh(positions, [r["wer"] for r in timed_rows])
    right.set_yticks(list(positions), [""] * len(timed_rows))
    right.invert_yaxis()
    right.set_xlim(min(r["wer"] for r in rows) - 0.02, max(r["wer"] for r in rows) + 0.01)
    right.set_xlabel("WER")
    figure.suptitle("lattice rescoring against scoring every path")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    run_cli(main)
