"""Serving throughput and latency: continuous batching against two baselines, each a real
uvicorn on the CPU, measured in the same run.

    .venv/bin/python -m bench.serve [--model shakespeare-char-lstm] [--seconds 15]

Engines:
  batched     the service as shipped (continuous batching, max_batch_size 128)
  unbatched   the same service with max_batch_size 1: one sequence at a time
  recompute   the seed's approach: one request at a time, whole prefix re-run for every token

Every request is an unseeded multinomial generation of --max-tokens tokens (never cached),
sent by N concurrent clients for a fixed window; tokens/s counts tokens of requests that
completed inside the window. Also measures cache-hit latency (the same argmax request
repeated). Prints a table, writes bench/results/serve.{md,json,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ENGINES = {
    "batched": (["app.main:create_app"], {}),
    "unbatched": (["app.main:create_app"], {"RNNSERVE_MAX_BATCH_SIZE": "1"}),
    "recompute": (["bench.baselines:create_recompute_app"], {}),
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, factory: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        for _ in range(600):
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def wait_idle(self) -> None:
        """Requests a client gave up on at the end of a window may still be running on the
        server; let them finish so they do not slow the next measurement."""
        for _ in range(3000):
            workers = httpx.get(self.url + "/readyz", timeout=5).json().get("workers", [])
            if all(w.get("in_flight", 0) == 0 for w in workers):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.asynccontextmanager
async def connected_clients(url: str, count: int, health_path: str, timeout: float | None = None):
    """`count` HTTP clients, each with one keep-alive connection, opened (by a GET of
    `health_path`) before the caller starts its clock. One pool shared by all clients would
    make the load generator the bottleneck: httpx's pool scans every connection for each
    request, and with 128 connections on two cores that delayed a burst of new requests by
    seconds."""
    clients = [httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=1)) for _ in range(count)]
    try:
        await asyncio.gather(*(client.get(health_path) for client in clients))
        yield clients
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


async def load(url: str, model: str, concurrency: int, seconds: float, max_tokens: int, prompt: str) -> dict:
    """`concurrency` clients (see `connected_clients`) for a window of `seconds`."""
    latencies: list[float] = []
    tokens = 0
    errors = 0
    async with connected_clients(url, concurrency, "/healthz") as clients:
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal tokens, errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "min_tokens": max_tokens, "strategy": "multinomial"}
                try:
                    response = await asyncio.wait_for(client.post("/v1/generate", json=body), timeout=max(0.01, deadline - started))
                except (asyncio.TimeoutError, httpx.HTTPError):
                    return  # still running when the window closed: not counted
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                tokens += response.json()["usage"]["completion_tokens"]

        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = min(time.perf_counter() - started, seconds)
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "tokens_per_s": tokens / elapsed,
            "p50_s": percentile(latencies, 0.5), "p99_s": percentile(latencies, 0.99)}


async def cache_hit_latency(url: str, model: str, prompt: str, max_tokens: int, repeats: int = 200) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "strategy": "argmax"}
        started = time.perf_counter()
        first = await client.post("/v1/generate", json=body)
        miss = time.perf_counter() - started
        assert first.json()["cached"] is False
        hits = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = await client.post("/v1/generate", json=body)
            hits.append(time.perf_counter() - started)
            assert response.json()["cached"] is True
    return {"miss_s": miss, "hit_p50_s": statistics.median(hits), "hit_p99_s": percentile(hits, 0.99)}


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4))
    for engine, rows in results.items():
        levels = [r["concurrency"] for r in rows]
        throughput.plot(levels, [r["tokens_per_s"] for r in rows], marker="o", label=engine)
        latency.plot(levels, [r["p50_s"] for r in rows], marker="o", label=f"{engine} p50")
    throughput.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="tokens / s", title="throughput")
    latency.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="seconds per request", title="latency (p50)")
    throughput.legend()
    latency.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--model", default="shakespeare-char-lstm", help="the model id to generate with")
    parser.add_argument("--models-dir", default=str(ROOT / "weights"), help="the models directory the servers serve")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128], help="concurrent clients at each level")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per engine and level")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--prompt", default="ROMEO:\n", help="the prompt of every request")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES),
                        help="the engines to measure (see above)")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    common_env = {"RNNSERVE_MODELS_DIR": args.models_dir, "RNNSERVE_SERVE_SHIPPED_MODELS": "false", "RNNSERVE_LOG_LEVEL": "WARNING", "RNNSERVE_REQUEST_TIMEOUT_S": "600",
                  "RNNSERVE_MAX_IN_FLIGHT_PER_WORKER": "4096", "RNNSERVE_MAX_N": "16"}
    results: dict[str, list[dict]] = {}
    cache: dict = {}
    for engine in args.engines:
        (factory,), env = ENGINES[engine]
        server = Server(factory, common_env | env)
        try:
            server.wait_ready()
            asyncio.run(load(server.url, args.model, 4, 2, args.max_tokens, args.prompt))  # warm-up
            results[engine] = []
            for concurrency in args.concurrency:
                server.wait_idle()
                row = asyncio.run(load(server.url, args.model, concurrency, args.seconds, args.max_tokens, args.prompt))
                results[engine].append(row)
                print(f"{engine:>10} c={concurrency:<4} {row['tokens_per_s']:9.1f} tok/s  p50 {row['p50_s']:.3f}s  p99 {row['p99_s']:.3f}s  ({row['requests']} requests)", flush=True)
            if engine == "batched":
                server.wait_idle()
                cache = asyncio.run(cache_hit_latency(server.url, args.model, args.prompt, args.max_tokens))
        finally:
            server.stop()
    lines = ["| concurrency | " + " | ".join(f"{e} tok/s | {e} p50 / p99 s" for e in results) + " | batched ÷ unbatched | batched ÷ recompute |",
             "|---" * (1 + 2 * len(results) + 2) + "|"]
    for index, concurrency in enumerate(args.concurrency):
        cells = []
        for engine in results:
            row = results[engine][index]
            cells += [f"{row['tokens_per_s']:.0f}", f"{row['p50_s']:.3f} / {row['p99_s']:.3f}"]
        ratio = lambda other: (f"{results['batched'][index]['tokens_per_s'] / results[other][index]['tokens_per_s']:.1f}×"
                               if other in results and "batched" in results and results[other][index]["tokens_per_s"] else "–")
        lines.append(f"| {concurrency} | " + " | ".join(cells) + f" | {ratio('unbatched')} | {ratio('recompute')} |")
    if cache:
        lines.append("")
        lines.append(f"Cache: first (miss) {cache['miss_s'] * 1000:.1f} ms; hit p50 {cache['hit_p50_s'] * 1000:.2f} ms, p99 {cache['hit_p99_s'] * 1000:.2f} ms.")
    header = (f"{args.model}, {args.max_tokens} tokens per request, {args.seconds:.0f} s per level, "
              f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")
    table = header + "\n\n" + "\n".join(lines)
    print("\n" + table)
    (RESULTS / f"serve-{args.label}.md").write_text(table + "\n")
    (RESULTS / f"serve-{args.label}.json").write_text(json.dumps({"results": results, "cache": cache, "args": vars(args)}, indent=2))
    plot(results, RESULTS / f"serve-{args.label}.png", header)
    print(f"wrote {RESULTS}/serve-{args.label}.md, .json and .png")


if __name__ == "__main__":
    main()
