"""A decoder's beam search with the language model behind HTTP, two ways, against the same real
uvicorn in one run: through sessions, and by re-scoring every beam's whole prefix.

    .venv/bin/python -m bench.sessions [--model wikitext2-lstm] [--utterances 64] [--beams 8] [--candidates 20] [--steps 12]

Each utterance is the first --steps words of a WikiText-2 validation line. At every step a
(simulated) acoustic model offers --candidates words: the line's next word and words drawn
from the vocabulary, the line's word with a bonus of --acoustic-bonus nats. Every beam is
extended by every candidate; an extension scores its beam's total plus the language model's
log-probability of the word plus its acoustic score, and the best --beams extensions of each
utterance go on. All utterances step together, as one decoder stepping all its beams.

sessions   per step: one POST /v1/sessions/batch/next asking every beam's session for the
           candidates' log-probabilities, one POST /v1/sessions/batch/score reading each chosen
           word into a fork of its beam's session, one POST /v1/sessions/batch/delete of the
           beams left behind.
rescoring  per step: one POST /v1/score per utterance (all at once) with each beam's whole
           prefix followed by each candidate (the engine scores them through prefix trees).

Both searches keep the same beams (checked: the best hypothesis of every utterance). Reports
words/s (utterances x steps over the wall time of the search) and each step's latency (p50,
p99) for both; writes bench/results/sessions.{md,json,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.peers import SCORE_DATA, start_rnnserve
from bench.serve import percentile
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TIMEOUT = httpx.Timeout(600.0)


@dataclass
class Beam:
    words: list[str]
    score: float  # language model plus acoustic, natural log
    session: str = ""


@dataclass
class Search:
    """One search's outcome: the step latencies and each utterance's best hypothesis."""

    step_s: list[float] = field(default_factory=list)
    best: list[list[str]] = field(default_factory=list)
    wall_s: float = 0.0


def utterances(path: Path, vocabulary: set[str], count: int, steps: int) -> list[list[str]]:
    """The first `steps` words of lines whose words the model knows (so every reference word is
    one token: both searches read the same tokens)."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) >= steps and all(w in vocabulary and w.isalpha() for w in words[:steps]):
            found.append(words[:steps])
        if len(found) == count:
            return found
    raise SystemExit(f"{path}: {len(found)} usable lines, {count} needed")


def candidate_lists(references: list[list[str]], words: list[str], count: int, seed: int) -> list[list[list[str]]]:
    """Per utterance and step: the reference word and `count - 1` others, in a shuffled order."""
    rng = random.Random(seed)
    lists = []
    for reference in references:
        steps = []
        for word in reference:
            others = [w for w in rng.sample(words, count) if w != word][: count - 1]
            options = [word] + others
            rng.shuffle(options)
            steps.append(options)
        lists.append(steps)
    return lists


def acoustic(word: str, reference: str, bonus: float) -> float:
    return bonus if word == reference else 0.0


def prune(extensions: list[Beam], beams: int) -> list[Beam]:
    return sorted(extensions, key=lambda b: (-b.score, b.words))[:beams]


async def post(client: httpx.AsyncClient, path: str, body: dict) -> dict:
    response = await client.post(path, json=body)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return response.json()


async def with_sessions(url: str, model: str, references, candidates, beams: int, bonus: float) -> Search:
    search = Search()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        started = time.perf_counter()
        roots = [(await post(client, "/v1/sessions", {"model": model}))["id"] for _ in references]
        hypotheses = [[Beam([], 0.0, root)] for root in roots]
        for step in range(len(references[0])):
            step_started = time.perf_counter()
            live = [(u, beam) for u, utterance in enumerate(hypotheses) for beam in utterance]
            asked = await post(client, "/v1/sessions/batch/next",
                               {"items": [{"id": beam.session, "candidates": [" " + w for w in candidates[u][step]]} for u, beam in live]})
            extensions: list[list[tuple[Beam, Beam]]] = [[] for _ in references]
            for (u, beam), result in zip(live, asked["results"]):
                for word, scored in zip(candidates[u][step], result["candidates"]):
                    total = beam.score + scored["logprob"] + acoustic(word, references[u][step], bonus)
                    extensions[u].append((beam, Beam(beam.words + [word], total)))
            chosen = []
            for u, options in enumerate(extensions):
                kept = prune([new for _, new in options], beams)
                parents = {id(new): parent for parent, new in options}
                chosen += [(u, parents[id(new)], new) for new in kept]
            read = await post(client, "/v1/sessions/batch/score",
                              {"items": [{"id": parent.session, "text": " " + new.words[-1], "fork": True} for _, parent, new in chosen]})
            hypotheses = [[] for _ in references]
            for (u, _, new), result in zip(chosen, read["results"]):
                new.session = result["id"]
                hypotheses[u].append(new)
            await post(client, "/v1/sessions/batch/delete", {"ids": list({beam.session for _, beam in live})})
            search.step_s.append(time.perf_counter() - step_started)
        search.wall_s = time.perf_counter() - started
        await post(client, "/v1/sessions/batch/delete", {"ids": [b.session for utterance in hypotheses for b in utterance]})
    search.best = [utterance[0].words for utterance in hypotheses]
    return search


async def by_rescoring(url: str, model: str, references, candidates, beams: int, bonus: float) -> Search:
    search = Search()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT, limits=httpx.Limits(max_connections=len(references))) as client:
        started = time.perf_counter()
        hypotheses = [[Beam([], 0.0)] for _ in references]
        for step in range(len(references[0])):
            step_started = time.perf_counter()

            async def extend(u: int) -> list[Beam]:
                # Each beam's acoustic total so far rides along; the language model's part is
                # the whole prefix's score, computed again.
                options = [(beam, word) for beam in hypotheses[u] for word in candidates[u][step]]
                texts = [" ".join(beam.words + [word]) for beam, word in options]
                scored = await post(client, "/v1/score", {"model": model, "texts": texts, "add_eos": False})
                news = []
                for (beam, word), result in zip(options, scored["results"]):
                    heard = sum(acoustic(w, r, bonus) for w, r in zip(beam.words + [word], references[u]))
                    news.append(Beam(beam.words + [word], result["logprob"] + heard))
                return prune(news, beams)

            hypotheses = list(await asyncio.gather(*(extend(u) for u in range(len(references)))))
            search.step_s.append(time.perf_counter() - step_started)
        search.wall_s = time.perf_counter() - started
    search.best = [utterance[0].words for utterance in hypotheses]
    return search


def summary(search: Search, words: int) -> dict:
    return {"words_per_s": words / search.wall_s, "wall_s": search.wall_s, "step_p50_s": percentile(search.step_s, 0.5),
            "step_p99_s": percentile(search.step_s, 0.99), "step_s": search.step_s}


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, row in results.items():
        axis.plot(range(1, len(row["step_s"]) + 1), row["step_s"], marker="o", label=f"{name} ({row['words_per_s']:.1f} words/s)")
    axis.set(xlabel="step (words decoded)", ylabel="step latency, s", yscale="log", title=title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--model", default="wikitext2-lstm", help="a recurrent language model's id")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "weights", help="the models directory the server serves")
    parser.add_argument("--data", type=Path, default=SCORE_DATA, help="text whose lines are the utterances")
    parser.add_argument("--utterances", type=int, default=64, help="utterances decoded together")
    parser.add_argument("--beams", type=int, default=8, help="beams per utterance")
    parser.add_argument("--candidates", type=int, default=20, help="words the acoustic model offers per step")
    parser.add_argument("--steps", type=int, default=12, help="words decoded per utterance")
    parser.add_argument("--acoustic-bonus", type=float, default=3.0, help="acoustic score of the reference word, nats")
    parser.add_argument("--seed", type=int, default=1, help="draws the distractor words")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the server runs the model")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    vocabulary = json.loads((args.models_dir / args.model / "vocab.json").read_text(encoding="utf-8"))
    tokens = vocabulary["tokens"] if isinstance(vocabulary, dict) else vocabulary
    words = sorted(t for t in tokens if t.isalpha())
    references = utterances(args.data, set(words), args.utterances, args.steps)
    candidates = candidate_lists(references, words, args.candidates, args.seed)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "rnnserve-bench-sessions"
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = {"RNNSERVE_MAX_SESSIONS_PER_KEY": str(4 * args.utterances * args.beams + 64),
                "RNNSERVE_MAX_SESSION_MB_PER_KEY": "1024"}
    server = start_rnnserve(args.models_dir / args.model, 128, log_dir, args.device, settings)
    try:
        server.wait_ready()
        warm = ([references[0][:2]], [candidates[0][:2]])
        asyncio.run(with_sessions(server.url, args.model, *warm, args.beams, args.acoustic_bonus))
        asyncio.run(by_rescoring(server.url, args.model, *warm, args.beams, args.acoustic_bonus))
        searches = {"sessions": asyncio.run(with_sessions(server.url, args.model, references, candidates, args.beams, args.acoustic_bonus)),
                    "rescoring": asyncio.run(by_rescoring(server.url, args.model, references, candidates, args.beams, args.acoustic_bonus))}
    finally:
        server.stop()
    decoded = args.utterances * args.steps
    results = {name: summary(search, decoded) for name, search in searches.items()}
    same = sum(a == b for a, b in zip(searches["sessions"].best, searches["rescoring"].best))
    ratio = results["sessions"]["words_per_s"] / results["rescoring"]["words_per_s"]
    header = (f"{args.model}, {args.utterances} utterances × {args.beams} beams, {args.candidates} candidates per step, "
              f"{args.steps} steps; {os.cpu_count()} CPU cores ({platform.machine()}), model on {args.device}")
    lines = [header, "", "| search | words/s | step p50 s | step p99 s | wall s |", "|---|---:|---:|---:|---:|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['words_per_s']:.2f} | {row['step_p50_s']:.3f} | {row['step_p99_s']:.3f} | {row['wall_s']:.1f} |")
    lines += ["", f"words/s, sessions ÷ rescoring: {ratio:.1f}×; the same best hypothesis for {same} of {args.utterances} utterances"]
    text = "\n".join(lines)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "sessions.md").write_text(text + "\n")
    (args.output_dir / "sessions.json").write_text(json.dumps({"settings": vars(args) | {"models_dir": str(args.models_dir),
                                                                                         "data": str(args.data), "output_dir": str(args.output_dir)},
                                                               "results": results, "ratio": ratio, "same_best": same}, indent=2))
    plot(results, args.output_dir / "sessions.png", f"{args.model}: beam search steps, {args.utterances}×{args.beams} beams")
    return results


if __name__ == "__main__":
    main()
