"""What the prompt-state cache saves, measured through HTTP against the same server with the
cache off (`RNNSERVE_PROMPT_CACHE_MB=0`), both real uvicorns started by this run, one after
the other.

    .venv/bin/python -m bench.prompt_cache [--model wikitext2-lstm] [--conversations 8] [--turns 8]

conversation  --conversations clients each hold a conversation of --turns turns. A turn's prompt
              is the whole conversation so far (every earlier prompt and streamed answer) and a
              new line of WikiText-2 validation text; the answer is --answer-tokens tokens of
              unseeded sampling, streamed. Per turn: the prompt's length in tokens, the time to
              the answer's first token (p50 over the conversations) with the cache and without,
              and the prompt tokens the model read (rnnserve_prompt_tokens_total in /metrics).
repeat        --repeat-clients clients each send the same --repeat-prompt-lines lines of text
              --repeat-requests times (unseeded sampling, so every answer is computed):
              requests/s and latency with the cache and without.

Prints the tables, writes bench/results/prompt-cache-<label>.{md,json,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import httpx

from bench.peers import SCORE_DATA, start_rnnserve
from bench.serve import connected_clients, percentile
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SETTINGS = {"cache on": {"RNNSERVE_PROMPT_CACHE_MB": "32"}, "cache off": {"RNNSERVE_PROMPT_CACHE_MB": "0"}}


def text_lines(path: Path, count: int, start: int = 0) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("=") and 20 <= len(line.split()) <= 120]
    if len(lines) < count:
        raise SystemExit(f"{path} has {len(lines)} usable lines; {count} needed")
    return [lines[(start + i) % len(lines)] for i in range(count)]


def prompt_tokens_read(url: str) -> dict[str, float]:
    counts = {"cache": 0.0, "model": 0.0}
    for line in httpx.get(url + "/metrics").text.splitlines():
        for source in counts:
            if line.startswith(f'rnnserve_prompt_tokens_total{{source="{source}"}}'):
                counts[source] = float(line.split()[-1])
    return counts


async def stream_turn(client: httpx.AsyncClient, model: str, prompt: str, tokens: int) -> tuple[float, str, int]:
    """(seconds to the first token, the answer's text, the prompt's tokens)."""
    started, first, text, usage = time.perf_counter(), None, [], {}
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "min_tokens": tokens, "strategy": "multinomial", "stream": True}
    async with client.stream("POST", "/v1/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[len("data: "):])
            if "usage" in event:
                usage = event["usage"]
            elif event["choices"][0].get("token"):
                first = first if first is not None else time.perf_counter() - started
                text.append(event["choices"][0]["text"])
    if usage.get("completion_tokens") != tokens:
        raise RuntimeError(f"asked for {tokens} tokens, got {usage}")
    return first, "".join(text), usage["prompt_tokens"]


async def conversations(url: str, model: str, users: list[list[str]], answer_tokens: int) -> list[dict]:
    """One row per turn: prompt tokens (mean), first-token p50/p99, prompt tokens read."""
    turns = len(users[0])
    firsts: list[list[float]] = [[] for _ in range(turns)]
    lengths: list[list[int]] = [[] for _ in range(turns)]
    read: list[float] = []
    async with connected_clients(url, len(users), "/healthz", timeout=600) as clients:

        async def converse(client: httpx.AsyncClient, lines: list[str], turn: int, history: list[str]) -> None:
            prompt = " ".join([*history, lines[turn]])
            first, answer, length = await stream_turn(client, model, prompt, answer_tokens)
            firsts[turn].append(first)
            lengths[turn].append(length)
            history[:] = [prompt + answer]

        histories: list[list[str]] = [[] for _ in users]
        for turn in range(turns):  # every conversation's turn t, then turn t + 1: rows compare like with like
            before = prompt_tokens_read(url)["model"]
            await asyncio.gather(*(converse(client, lines, turn, history) for client, lines, history in zip(clients, users, histories)))
            read.append(prompt_tokens_read(url)["model"] - before)
    return [{"turn": turn + 1, "prompt_tokens": statistics.mean(lengths[turn]), "ttft_p50_s": percentile(firsts[turn], 0.5),
             "ttft_p99_s": percentile(firsts[turn], 0.99), "prompt_tokens_read": read[turn] / len(users)} for turn in range(turns)]


async def repeats(url: str, model: str, prompt: str, clients_count: int, requests: int, answer_tokens: int) -> dict:
    latencies: list[float] = []
    async with connected_clients(url, clients_count, "/healthz", timeout=600) as clients:

        async def client_loop(client: httpx.AsyncClient) -> None:
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.post("/v1/generate", json={"model": model, "prompt": prompt, "max_tokens": answer_tokens,
                                                                    "min_tokens": answer_tokens, "strategy": "multinomial"})
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for client in clients))
        elapsed = time.perf_counter() - started
    return {"requests_per_s": len(latencies) / elapsed, "p50_s": percentile(latencies, 0.5), "p99_s": percentile(latencies, 0.99)}


def plot(rows: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for setting, turns in rows.items():
        axis.plot([t["prompt_tokens"] for t in turns], [t["ttft_p50_s"] * 1e3 for t in turns], marker="o", label=setting)
    axis.set(xlabel="prompt tokens (the conversation so far)", ylabel="first token p50, ms", title=title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--model", default="wikitext2-lstm", help="the model id to converse with")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "weights", help="the models directory both servers serve")
    parser.add_argument("--data", type=Path, default=SCORE_DATA, help="text whose lines are the users' turns")
    parser.add_argument("--conversations", type=int, default=8, help="concurrent conversations (one client each)")
    parser.add_argument("--turns", type=int, default=8, help="turns of each conversation")
    parser.add_argument("--answer-tokens", type=int, default=32, help="tokens of each streamed answer")
    parser.add_argument("--repeat-clients", type=int, default=8, help="concurrent clients of the repeat test")
    parser.add_argument("--repeat-requests", type=int, default=8, help="times each repeat client sends its prompt")
    parser.add_argument("--repeat-prompt-lines", type=int, default=3, help="lines of text in the repeated prompt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the servers run the model")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    lines = text_lines(args.data, args.conversations * args.turns + args.repeat_prompt_lines)
    users = [lines[c * args.turns : (c + 1) * args.turns] for c in range(args.conversations)]
    repeated = " ".join(lines[-args.repeat_prompt_lines :])
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "rnnserve-bench-prompt-cache"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"conversation": {}, "repeat": {}}
    for setting, env in SETTINGS.items():
        server = start_rnnserve(args.models_dir / args.model, 128, log_dir, args.device, env)
        try:
            server.wait_ready()
            asyncio.run(repeats(server.url, args.model, "warm up", 2, 2, 4))
            results["conversation"][setting] = asyncio.run(conversations(server.url, args.model, users, args.answer_tokens))
            results["repeat"][setting] = asyncio.run(repeats(server.url, args.model, repeated, args.repeat_clients, args.repeat_requests, args.answer_tokens))
        finally:
            server.stop()
    on, off = results["conversation"]["cache on"], results["conversation"]["cache off"]
    header = (f"{args.model}, {args.conversations} conversations of {args.turns} turns, answers of {args.answer_tokens} tokens, "
              f"{os.cpu_count()} CPU cores ({platform.machine()}), models on {args.device}")
    lines_out = [header, "", "| turn | prompt tokens | first token p50 / p99 s, cache on | cache off | ratio (off ÷ on, p50) | prompt tokens read per conversation, on / off |",
                 "|---:|---:|---|---|---:|---|"]
    for a, b in zip(on, off):
        lines_out.append(f"| {a['turn']} | {a['prompt_tokens']:.0f} | {a['ttft_p50_s']:.3f} / {a['ttft_p99_s']:.3f} | {b['ttft_p50_s']:.3f} / {b['ttft_p99_s']:.3f} | "
                         f"{b['ttft_p50_s'] / a['ttft_p50_s']:.2f}× | {a['prompt_tokens_read']:.0f} / {b['prompt_tokens_read']:.0f} |")
    r_on, r_off = results["repeat"]["cache on"], results["repeat"]["cache off"]
    lines_out += ["", f"One prompt of {args.repeat_prompt_lines} lines sent again and again by {args.repeat_clients} clients, "
                  f"{args.repeat_requests} requests each, answers of {args.answer_tokens} tokens:", "",
                  "| setting | requests/s | p50 / p99 s |", "|---|---:|---|"]
    for setting, row in results["repeat"].items():
        lines_out.append(f"| {setting} | {row['requests_per_s']:.1f} | {row['p50_s']:.3f} / {row['p99_s']:.3f} |")
    lines_out.append(f"\nrequests/s, cache on ÷ off: {r_on['requests_per_s'] / r_off['requests_per_s']:.2f}×")
    text = "\n".join(lines_out)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"prompt-cache-{args.label}.md").write_text(text + "\n")
    (args.output_dir / f"prompt-cache-{args.label}.json").write_text(json.dumps(results, indent=2))
    plot(results["conversation"], args.output_dir / f"prompt-cache-{args.label}.png", f"{args.model}: time to first token by conversation length")
    return results


if __name__ == "__main__":
    main()
