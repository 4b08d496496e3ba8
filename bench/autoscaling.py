"""The autoscaling signal against latency: one replica (a real uvicorn) under growing
concurrency, its rnnserve_in_flight_per_worker sampled from /metrics while it serves.

    .venv/bin/python -m bench.autoscaling [--model wikitext2-lstm] [--seconds 8]

For each concurrency level: the signal's mean while loaded, generation tokens/s, p50 and p99
request latency. The scale-out threshold is the signal at the knee: the smallest level whose
throughput reaches --knee (90%) of the best level's. Past it a replica gains little
throughput and only queues, so p99 grows with the signal; the HPA's target (deploy/k8s) is
set there. Prints a table, writes bench/results/autoscaling-<label>.{md,json,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import threading
from pathlib import Path

import httpx

from bench.serve import RESULTS, ROOT, Server, load
from training.cli import parser_for

SIGNAL = "rnnserve_in_flight_per_worker"


def read_signal(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    return float(re.search(rf"^{SIGNAL} (\S+)$", text, re.MULTILINE).group(1))


class SignalSampler:
    """Reads the signal every `interval` seconds on a thread while the load runs."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        self.url, self.interval = url, interval
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.samples.append(read_signal(self.url))

    def __enter__(self) -> "SignalSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def knee(rows: list[dict], fraction: float) -> dict:
    best = max(row["tokens_per_s"] for row in rows)
    return next(row for row in rows if row["tokens_per_s"] >= fraction * best)


def plot(rows: list[dict], threshold: dict, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4))
    signal = [row["signal_mean"] for row in rows]
    latency.plot(signal, [row["p99_s"] for row in rows], marker="o", label="p99")
    latency.plot(signal, [row["p50_s"] for row in rows], marker="o", label="p50")
    throughput.plot(signal, [row["tokens_per_s"] for row in rows], marker="o")
    for axis in (latency, throughput):
        axis.axvline(threshold["signal_mean"], color="grey", linestyle="--", label=f"scale out at {threshold['signal_mean']:.0f}")
        axis.set(xscale="log", xlabel=f"{SIGNAL} (mean while loaded)")
    latency.set(yscale="log", ylabel="seconds per request", title="latency")
    throughput.set(ylabel="tokens / s", title="throughput")
    latency.legend()
    throughput.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--model", default="wikitext2-lstm", help="the model id to generate with")
    parser.add_argument("--models-dir", default=str(ROOT / "weights"), help="the models directory the replica serves")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256],
                        help="concurrent clients at each level")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per level")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--prompt", default="The game was released in", help="the prompt of every request")
    parser.add_argument("--knee", type=float, default=0.9, help="fraction of the best throughput that marks the knee")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    env = {"RNNSERVE_MODELS_DIR": args.models_dir, "RNNSERVE_SERVE_SHIPPED_MODELS": "false", "RNNSERVE_LOG_LEVEL": "WARNING",
           "RNNSERVE_REQUEST_TIMEOUT_S": "600", "RNNSERVE_MAX_IN_FLIGHT_PER_WORKER": "4096"}
    server = Server("app.main:create_app", env)
    rows: list[dict] = []
    try:
        server.wait_ready()
        asyncio.run(load(server.url, args.model, 4, 2, args.max_tokens, args.prompt))  # warm-up
        for concurrency in args.concurrency:
            server.wait_idle()
            with SignalSampler(server.url) as sampler:
                row = asyncio.run(load(server.url, args.model, concurrency, args.seconds, args.max_tokens, args.prompt))
            loaded = sampler.samples[: max(1, int(len(sampler.samples) * 0.95))]  # drop the tail after the window
            row |= {"signal_mean": statistics.fmean(loaded) if loaded else float("nan"), "signal_max": max(loaded, default=float("nan"))}
            rows.append(row)
            print(f"c={concurrency:<4} signal {row['signal_mean']:6.1f}  {row['tokens_per_s']:8.1f} tok/s  "
                  f"p50 {row['p50_s']:.3f}s  p99 {row['p99_s']:.3f}s", flush=True)
    finally:
        server.stop()
    threshold = knee(rows, args.knee)
    header = (f"{args.model}, {args.max_tokens}-token sampled generations, one replica with one worker, {args.seconds:.0f} s per level, "
              f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")
    lines = [f"| concurrent clients | {SIGNAL} (mean) | tokens/s | p50 s | p99 s |", "|---|---|---|---|---|"]
    for row in rows:
        mark = " ← knee" if row is threshold else ""
        lines.append(f"| {row['concurrency']} | {row['signal_mean']:.1f}{mark} | {row['tokens_per_s']:.0f} | {row['p50_s']:.3f} | {row['p99_s']:.3f} |")
    lines.append("")
    lines.append(f"Knee: {threshold['tokens_per_s']:.0f} tok/s at {SIGNAL} ≈ {threshold['signal_mean']:.0f} "
                 f"(≥ {args.knee:.0%} of the best level's {max(r['tokens_per_s'] for r in rows):.0f} tok/s).")
    table = header + "\n\n" + "\n".join(lines)
    print("\n" + table)
    report = {"rows": rows, "knee": threshold, "args": vars(args) | {"output_dir": str(args.output_dir)}}
    (args.output_dir / f"autoscaling-{args.label}.md").write_text(table + "\n")
    (args.output_dir / f"autoscaling-{args.label}.json").write_text(json.dumps(report, indent=2))
    plot(rows, threshold, args.output_dir / f"autoscaling-{args.label}.png", header)
    print(f"wrote {args.output_dir}/autoscaling-{args.label}.md, .json and .png")
    return report


if __name__ == "__main__":
    main()
