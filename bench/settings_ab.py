"""The service under different settings, side by side: an A/B of any RNNSERVE_* variables.

    .venv/bin/python -m bench.settings_ab      # the shipped settings against RNNSERVE_SINGLE_THREAD_ROWS=0
    .venv/bin/python -m bench.settings_ab --variant shipped --variant "no cache" RNNSERVE_PROMPT_CACHE_MB=0

Each variant is a real uvicorn of its own (the first is the baseline). All start once and are
paused (SIGSTOP) while another is measured; each level runs every variant in --rounds rounds,
in a rotating order, on the same pre-drawn requests as bench.peers (unseeded sampling of exact
lengths). Reported per level and variant: tokens/s (median of rounds), the median of the
rounds' paired ratios to the baseline with their range, latency, the cores the server's process
group used and its CPU time per token. Machines like this one drift by ±15% over minutes, which
is why variants are compared round by round and not run after one another. Prints a table,
writes bench/results/settings-ab-<label>.{md,json,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from bench.peers import LENGTHS, PROMPTS, Process, combine_rounds, draw_lengths, run_clients, run_rounds, send, start_rnnserve
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_VARIANTS = [["one thread at few rows (shipped)"], ["two threads always", "RNNSERVE_SINGLE_THREAD_ROWS=0"]]


def parse_variant(words: list[str]) -> tuple[str, dict[str, str]]:
    """["name", "KEY=VALUE", ...] -> (name, settings)."""
    name, assignments = words[0], words[1:]
    settings = {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals or not key.startswith("RNNSERVE_"):
            raise argparse.ArgumentTypeError(f"{assignment!r}: settings are RNNSERVE_NAME=value")
        settings[key] = value
    return name, settings


def paired(rows: list[dict]) -> None:
    """Each row of a level gets, per round, its tokens/s ÷ the baseline's (the level's first row)."""
    baseline = rows[0]["tokens_per_s_rounds"]
    for row in rows:
        row["ratio_rounds"] = [mine / base for mine, base in zip(row["tokens_per_s_rounds"], baseline)]
        row["ratio"] = statistics.median(row["ratio_rounds"])


def table(rows: list[dict], baseline: str) -> str:
    lines = [f"| model | lengths | clients | variant | tok/s (median of rounds) | ÷ {baseline}, median of rounds (range) | "
             "p50 / p99 s | server cores | server CPU µs per token |",
             "|---|---|---:|---|---:|---:|---|---:|---:|"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}× ({min(row['ratio_rounds']):.2f}–{max(row['ratio_rounds']):.2f})"
        lines.append(f"| {row['model']} | {row['lengths']} | {row['concurrency']} | {row['variant']} | {row['tokens_per_s']:.0f} | {ratio} | "
                     f"{row['p50_s']:.3f} / {row['p99_s']:.3f} | {row['server_cores']:.2f} | {row['server_cpu_us_per_token']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["model"], r["lengths"]) for r in rows})
    figure, axes = plt.subplots(2, len(panels), figsize=(4.5 * len(panels), 7), squeeze=False)
    for column, (model, lengths) in enumerate(panels):
        for variant in dict.fromkeys(r["variant"] for r in rows):
            mine = [r for r in rows if (r["model"], r["lengths"], r["variant"]) == (model, lengths, variant)]
            clients = [r["concurrency"] for r in mine]
            axes[0][column].plot(clients, [r["tokens_per_s"] for r in mine], marker="o", label=variant)
            axes[1][column].plot(clients, [r["server_cores"] for r in mine], marker="o", label=variant)
        axes[0][column].set(xscale="log", ylabel="tokens / s", title=f"{model}, {lengths} lengths")
        axes[1][column].set(xscale="log", xlabel="concurrent clients", ylabel="server cores used")
        axes[0][column].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--variant", action="append", nargs="+", metavar="NAME [RNNSERVE_X=VALUE ...]",
                        help="a name and the settings it changes; the first is the baseline (default: the shipped "
                             "settings against RNNSERVE_SINGLE_THREAD_ROWS=0)")
    parser.add_argument("--models", nargs="+", default=["wikitext2-lstm", "shakespeare-char-lstm"], help="model ids to measure")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "weights", help="the models directory every variant serves")
    parser.add_argument("--lengths", nargs="+", default=["mixed"], choices=list(LENGTHS),
                        help="equal: 64 tokens per request; mixed: drawn from 16..128")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 32], help="concurrent clients at each level")
    parser.add_argument("--requests-per-client", type=int, default=3, help="requests each client sends per round")
    parser.add_argument("--rounds", type=int, default=3, help="times each level runs every variant (the median is reported)")
    parser.add_argument("--max-batch-size", type=int, default=128, help="live sequences per step in every variant")
    parser.add_argument("--prompt", default=None, help="the prompt of every request (default: each model's example prompt)")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(words) for words in (args.variant or DEFAULT_VARIANTS)]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if len({name for name, _ in variants}) < len(variants):
        parser.error("variant names must differ")
    log_dir = Path(tempfile.mkdtemp(prefix="rnnserve-settings-ab-"))  # the servers' logs, if one fails
    rows: list[dict] = []
    for model in args.models:
        prompt = args.prompt or PROMPTS.get(model, "The")
        servers: dict[str, Process] = {}
        try:
            for name, settings in variants:
                servers[name] = start_rnnserve(args.models_dir / model, args.max_batch_size, log_dir, settings=settings)
            for server in servers.values():  # warmed up, then paused until its turn
                server.wait_ready()
                asyncio.run(run_clients(server.url, "rnnserve", [16] * 8, 4, lambda client, length: send(client, "rnnserve", model, prompt, length)))
                server.pause()
            for lengths in args.lengths:
                for concurrency in args.concurrency:
                    drawn = draw_lengths(lengths, max(16, args.requests_per_client * concurrency), seed=concurrency)
                    names = [name for name, _ in variants]
                    runs = run_rounds(names, servers.__getitem__, args.rounds, lambda name, server: asyncio.run(
                        run_clients(server.url, "rnnserve", drawn, concurrency, lambda client, length: send(client, "rnnserve", model, prompt, length),
                                    server.cpu_seconds)))
                    level = [combine_rounds("rnnserve", concurrency, runs[name]) | {"variant": name, "model": model, "lengths": lengths}
                             for name in names]
                    paired(level)
                    rows.extend(level)
                    for row in level:
                        print(f"{model} {lengths} c={concurrency:<4} {row['variant']:<36} {row['tokens_per_s']:8.0f} tok/s  "
                              f"÷ baseline {row['ratio']:.2f}  p99 {row['p99_s']:.3f}  server cores {row['server_cores']:.2f}  "
                              f"{row['server_cpu_us_per_token']:.0f} µs/token", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    settings_text = "; ".join(f"{name}: " + (", ".join(f"{k}={v}" for k, v in settings.items()) or "shipped settings")
                              for name, settings in variants)
    header = (f"rnnserve under different settings ({settings_text}), {args.requests_per_client} requests per client "
              f"(at least 16), {args.rounds} paired rounds per level")
    text = header + "\n\n" + table(rows, variants[0][0])
    print("\n" + text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"settings-ab-{args.label}.md").write_text(text + "\n")
    (args.output_dir / f"settings-ab-{args.label}.json").write_text(json.dumps({"rows": rows, "variants": dict(variants)}, indent=2))
    plot(rows, args.output_dir / f"settings-ab-{args.label}.png", header)
    print(f"wrote {args.output_dir}/settings-ab-{args.label}.md, .json and .png")
    return rows


if __name__ == "__main__":
    main()
