"""What continuous batching can gain over a dynamic batcher on this device, from measured step
costs alone (no HTTP, no client): the ceiling of bench.peers' "rnnserve ÷ LitServe" ratio.

    .venv/bin/python -m bench.batching_ceiling [--models wikitext2-lstm shakespeare-char-lstm] [--device cpu]

The engine's whole decode step (`ContinuousBatcher.step`: cell, output layer, sampling,
bookkeeping) is timed at a range of batch sizes. Then the same pre-drawn requests as
bench.peers (exact lengths 64, or 16..128) are replayed through two schedules, each step
costing the measured (interpolated) time for its number of live rows, prompts not counted:

  continuous  every client's next request joins as soon as its last one ends (up to
              --max-batch-size live rows);
  dynamic     LitServe's dynamic batcher: up to max_batch_size (--dynamic-batch-sizes) waiting requests start
              together and run until the longest is done; a client's next request waits for
              the next batch.

With --measured-rounds N (default 3) both schedules are then also run for real, in this process
(no HTTP, no client): the engine's `ContinuousBatcher` with each client's next request joining
as soon as its last one ends, and `models.generation.generate` over each dynamic batch (what
bench.litserve_peer's dynamic batcher calls), the same requests, rounds in alternating order.
Their ratio is what the engine realises of the ceiling; what bench.peers loses beyond it is the
HTTP path and the cores the load generator shares.

Where a step costs about the same for 8 rows as for 32 (a GPU), the dynamic batcher's
shrinking batches waste most of their steps and the ratio approaches the longest / mean length;
where the cost grows with every row (a CPU), a shrinking batch also costs less per step, and
little is left to win. Prints a table, writes bench/results/batching-ceiling-<label>.md/.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from app.engine.batcher import ContinuousBatcher
from app.engine.lm_tasks import TokenLimits
from app.engine.messages import ChoiceFinished, GenerateJob
from app.settings import Settings
from bench.peers import LENGTHS, PROMPTS, draw_lengths
from bench.roofline import timed
from models.generation import generate
from models.registry import load_model
from models.sampling import SamplingParams
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BATCHES = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128]


def step_costs(loaded, batches: list[int], repeats: int) -> dict[int, float]:
    """Seconds per engine step with `batch` live rows."""
    costs = {}
    for batch in batches:
        params = [SamplingParams(max_tokens=100_000, min_tokens=100_000) for _ in range(batch)]
        batcher = ContinuousBatcher(loaded, batch, TokenLimits(4096, 4096))
        batcher.submit(GenerateJob("ceiling", loaded.model_id, PROMPTS.get(loaded.model_id, "The"), params), lambda event: None)
        batcher.step(lambda event: None)  # the prefill
        costs[batch] = timed(lambda: batcher.step(lambda event: None), repeats)
    return costs


def continuous_seconds(lengths: list[int], clients: int, max_rows: int, cost) -> float:
    waiting, live, seconds = list(reversed(lengths)), [], 0.0
    while waiting or live:
        while waiting and len(live) < min(clients, max_rows):
            live.append(waiting.pop())
        seconds += cost(len(live))
        live = [left - 1 for left in live if left > 1]
    return seconds


def dynamic_seconds(lengths: list[int], clients: int, batch_size: int, cost) -> float:
    """Clients send in turn; a batch takes up to `batch_size` of the requests waiting when it
    starts (at most one per client, who waits for its answer before sending the next)."""
    waiting, seconds = list(reversed(lengths)), 0.0
    while waiting:
        batch = [waiting.pop() for _ in range(min(batch_size, clients, len(waiting)))]
        seconds += sum(cost(sum(1 for length in batch if length > step)) for step in range(max(batch)))
    return seconds


def exact_length(length: int) -> SamplingParams:
    """Unseeded sampling of exactly `length` tokens, as bench.peers asks for."""
    return SamplingParams(strategy="multinomial", max_tokens=length, min_tokens=length)


def measured_continuous(loaded, prompt: str, lengths: list[int], clients: int, max_rows: int) -> float:
    """Seconds for the engine's continuous batcher to serve `lengths` to `clients` clients, each
    sending its next request the moment its last one finishes (the service's prompt-state cache
    on, at its default size, as served)."""
    cache_bytes = int(Settings.model_fields["prompt_cache_mb"].default * 2**20)
    batcher = ContinuousBatcher(loaded, max_rows, TokenLimits(4096, 4096), cache_bytes)
    waiting, finished, served = list(reversed(lengths)), [], 0

    def emit(event) -> None:
        if isinstance(event, ChoiceFinished):
            finished.append(event)

    def send_next() -> None:
        length = waiting.pop()
        batcher.submit(GenerateJob(f"request-{len(waiting)}", loaded.model_id, prompt, [exact_length(length)]), emit)

    started = time.perf_counter()
    for _ in range(min(clients, len(waiting))):
        send_next()
    while batcher.busy:
        batcher.step(emit)
        for event in finished:
            served += len(event.tokens)
            if waiting:
                send_next()
        finished.clear()
    if served != sum(lengths):
        raise RuntimeError(f"the continuous batcher generated {served} tokens, asked for {sum(lengths)}")
    return time.perf_counter() - started


def measured_dynamic(loaded, prompt: str, lengths: list[int], clients: int, batch_size: int) -> float:
    """Seconds for dynamic batches of up to `batch_size` requests (one per client at a time), each
    run by `models.generation.generate` until its longest request is done."""
    prompt_ids = loaded.encode_text(prompt, add_start=True).ids
    started, served = time.perf_counter(), 0
    for first in range(0, len(lengths), min(batch_size, clients)):
        batch = lengths[first : first + min(batch_size, clients)]
        completions = generate(loaded.model, loaded.vocab, loaded.tokenizer, [prompt_ids] * len(batch), [exact_length(n) for n in batch])
        served += sum(len(c.token_ids) for c in completions)
    if served != sum(lengths):
        raise RuntimeError(f"the dynamic batches generated {served} tokens, asked for {sum(lengths)}")
    return time.perf_counter() - started


def measure_schedules(loaded, lengths: list[int], clients: int, args) -> dict:
    """Both schedules run for real, `args.measured_rounds` times in alternating order: median
    tokens/s of each, and the median of the rounds' paired ratios (continuous ÷ best dynamic)."""
    prompt = PROMPTS.get(loaded.model_id, "The")
    schedules = {"continuous": lambda: measured_continuous(loaded, prompt, lengths, clients, args.max_batch_size)}
    schedules |= {size: (lambda size=size: measured_dynamic(loaded, prompt, lengths, clients, size)) for size in args.dynamic_batch_sizes}
    rates: dict = {name: [] for name in schedules}
    names = list(schedules)
    for round_index in range(args.measured_rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(sum(lengths) / schedules[name]())
    ratios = [rates["continuous"][i] / max(rates[size][i] for size in args.dynamic_batch_sizes) for i in range(args.measured_rounds)]
    return {"measured_continuous_tokens_per_s": statistics.median(rates["continuous"]),
            "measured_dynamic_tokens_per_s": {size: statistics.median(rates[size]) for size in args.dynamic_batch_sizes},
            "measured_ratio": statistics.median(ratios), "measured_ratio_rounds": ratios}


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--models", nargs="+", default=["wikitext2-lstm", "shakespeare-char-lstm"], help="model ids to measure")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "weights", help="where the model ids are found")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128], help="concurrent clients at each level")
    parser.add_argument("--max-batch-size", type=int, default=128, help="live rows of the continuous schedule at most")
    parser.add_argument("--dynamic-batch-sizes", type=int, nargs="+", default=[32, 128],
                        help="LitServe max_batch_size settings; the ratio is against the best")
    parser.add_argument("--requests-per-client", type=int, default=30, help="more than bench.peers: a steadier estimate")
    parser.add_argument("--measured-rounds", type=int, default=3, help="rounds of the schedules run for real (0: the replay only)")
    parser.add_argument("--measured-requests-per-client", type=int, default=6, help="requests per client in the measured runs")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCHES,
                        help="batch sizes whose step cost is timed (others are interpolated)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: every core)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    largest = max(args.max_batch_size, *args.dynamic_batch_sizes)
    if max(args.batch_sizes) < largest:
        parser.error(f"--batch-sizes must reach {largest} rows (the largest batch a schedule runs); costs are not extrapolated")
    torch.set_num_threads(args.threads)
    rows = []
    with torch.inference_mode():
        for model_id in args.models:
            loaded = load_model(args.models_dir / model_id, args.device)
            costs = step_costs(loaded, [b for b in args.batch_sizes if b <= largest], args.repeats)
            sizes, seconds = np.array(sorted(costs)), np.array([costs[b] for b in sorted(costs)])

            def cost(rows: int) -> float:
                return float(np.interp(rows, sizes, seconds)) if rows else 0.0

            for lengths in LENGTHS:
                for clients in args.concurrency:
                    drawn = draw_lengths(lengths, args.requests_per_client * clients, seed=clients)
                    tokens = sum(drawn)
                    continuous = continuous_seconds(drawn, clients, args.max_batch_size, cost)
                    dynamic = {size: dynamic_seconds(drawn, clients, size, cost) for size in args.dynamic_batch_sizes}
                    row = {"model": model_id, "lengths": lengths, "clients": clients, "continuous_tokens_per_s": tokens / continuous,
                           "dynamic_tokens_per_s": {size: tokens / seconds for size, seconds in dynamic.items()},
                           "ratio": min(dynamic.values()) / continuous,
                           "step_ms": {b: round(s * 1e3, 3) for b, s in costs.items()}}
                    if args.measured_rounds:
                        measured = draw_lengths(lengths, args.measured_requests_per_client * clients, seed=clients)
                        row |= measure_schedules(loaded, measured, clients, args)
                    rows.append(row)
                    print(f"{model_id} {lengths} {clients} clients: ceiling {row['ratio']:.2f}x"
                          + (f", measured {row['measured_ratio']:.2f}x" if args.measured_rounds else ""), flush=True)
    lines = table(rows, args)
    steps = "; ".join(f"{m}: " + ", ".join(f"{b} rows {ms} ms" for b, ms in next(r for r in rows if r["model"] == m)["step_ms"].items())
                      for m in args.models)
    measured = (f"; measured: both schedules run in process, {args.measured_requests_per_client} requests per client, "
                f"median of {args.measured_rounds} rounds" if args.measured_rounds else "")
    text = (f"engine steps only, {args.device}, {args.threads} threads; measured step times: {steps}{measured}\n\n" + "\n".join(lines))
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"batching-ceiling-{args.label}.md").write_text(text + "\n")
    (args.output_dir / f"batching-ceiling-{args.label}.json").write_text(json.dumps(rows, indent=2))
    return rows


def table(rows: list[dict], args) -> list[str]:
    sizes = args.dynamic_batch_sizes
    header = ("| model | lengths | clients | continuous tok/s |" + "".join(f" dynamic {size} tok/s |" for size in sizes)
              + " ceiling of the ratio (continuous ÷ best dynamic) |")
    if args.measured_rounds:
        header += (" measured in process: continuous tok/s |" + "".join(f" dynamic {size} tok/s |" for size in sizes)
                   + " ratio, median of rounds (range) |")
    columns = 5 + len(sizes) + (2 + len(sizes) if args.measured_rounds else 0)
    lines = [header, "|---|---|" + "---:|" * (columns - 2)]
    for r in rows:
        line = (f"| {r['model']} | {r['lengths']} | {r['clients']} | {r['continuous_tokens_per_s']:.0f} |"
                + "".join(f" {r['dynamic_tokens_per_s'][size]:.0f} |" for size in sizes) + f" {r['ratio']:.2f}× |")
        if args.measured_rounds:
            line += (f" {r['measured_continuous_tokens_per_s']:.0f} |" + "".join(f" {r['measured_dynamic_tokens_per_s'][size]:.0f} |" for size in sizes)
                     + f" {r['measured_ratio']:.2f}× ({min(r['measured_ratio_rounds']):.2f}–{max(r['measured_ratio_rounds']):.2f}) |")
        lines.append(line)
    return lines


if __name__ == "__main__":
    main()
