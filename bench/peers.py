"""The service against a peer on the same weights: LitServe around this project's own model code
(bench/litserve_peer.py, its dynamic batcher and its continuous-batching loop), same machine,
same clients, same requests, one run.

    .venv/bin/python -m bench.peers [--models wikitext2-lstm shakespeare-char-lstm] [--concurrency 1 8 32 128]

Every level sends the same pre-drawn requests to every engine: unseeded multinomial sampling of
an exact number of tokens (min_tokens = max_tokens), 64 each ("equal") or drawn from 16..128
("mixed"), max(16, 3 × clients) requests pulled from one queue by N concurrent clients, each
with its own keep-alive connection.
Every server is started once and paused (SIGSTOP) while another is measured, so an idle server
costs nothing (an idle LitServe continuous loop spins a core) and no server waits minutes for
its turn: each level runs --rounds rounds, every engine once per round in a rotating order,
seconds apart, because this machine drifts by ±15% and more over minutes. Tokens/s is the median
over rounds of all tokens / wall time, and the ratio to LitServe is the median of the rounds'
paired ratios (the service ÷ the best LitServe engine of the same round), with their range;
latency per request (p50, p99) and time to the first token for the streaming engines (for the
others it is the whole request) pool every round's requests. Engines:

  rnnserve             the service, POST /v1/generate (continuous batching, worker process)
  rnnserve-stream      the same server, "stream": true
  rnnserve-int8        a second server of the service computing in int8 (RNNSERVE_PRECISION=int8:
                       int8 recurrent and output layers, docs/quantization.md); the others are fp32
  litserve-dynamic     LitServe's dynamic batcher around models.generation.generate
                       (--litserve-batch-size, 32 by default; its best setting up to 32 clients)
  litserve-dynamic-N   the same with max_batch_size N (128: its best setting at 128 clients)
  litserve-continuous  LitServe's continuous-batching loop (streaming) around prefill/decode_step

Prints a table, writes bench/results/peers-<label>.{md,json,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.serve import connected_clients, free_port, percentile
from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LENGTHS = {"equal": (64, 64), "mixed": (16, 128)}
HEALTH_PATHS = {"rnnserve": "/healthz", "litserve": "/health"}
SCORE_DATA = ROOT.parent / "shared" / "data" / "wikitext-2" / "valid.txt"
PROMPTS = {"wikitext2-lstm": "The game was released in", "shakespeare-char-lstm": "ROMEO:\n"}


class Process:
    """A server in a subprocess, ready when `health_path` answers 200."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, health_path: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.health_path = health_path
        self.log = open(log, "w")
        # Its own process group: LitServe's API servers and workers are children that outlive
        # a signal to the parent alone.
        self.process = subprocess.Popen(command, cwd=ROOT, env=os.environ | env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's live processes (its process group: LitServe's
        API servers and inference workers, the service's HTTP process and workers) from
        /proc; NaN where there is no /proc."""
        if not os.path.isdir("/proc"):
            return math.nan
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()  # from the state on: the name may hold spaces
            except OSError:  # gone since the listing
                continue
            if int(fields[2]) == self.process.pid:  # process group
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def pause(self) -> None:
        """Stop every process of the server (SIGSTOP): it keeps its memory and warm state and
        takes no CPU until resumed."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a paused process would hold the SIGTERM until continued
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        self.log.close()


def start_rnnserve(model_dir: Path, max_batch_size: int, log_dir: Path, device: str = "cpu", settings: dict[str, str] | None = None,
                   precision: str = "fp32") -> Process:
    """The service over `model_dir`'s models; `settings`: more RNNSERVE_* variables."""
    port = free_port()
    env = {"RNNSERVE_DEVICE": device, "RNNSERVE_MODELS_DIR": str(model_dir.parent), "RNNSERVE_SERVE_SHIPPED_MODELS": "false", "RNNSERVE_LOG_LEVEL": "WARNING",
           "RNNSERVE_REQUEST_TIMEOUT_S": "600", "RNNSERVE_MAX_IN_FLIGHT_PER_WORKER": "4096", "RNNSERVE_MAX_BATCH_SIZE": str(max_batch_size),
           # Every request computed, as by the peer (the benchmark repeats texts; scoring is deterministic).
           "RNNSERVE_CACHE_MAX_ENTRIES": "0", "RNNSERVE_PRECISION": precision} | (settings or {})
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]
    return Process(command, env, port, "/readyz", log_dir / f"rnnserve-{port}.log")


def start_litserve(model_dir: Path, mode: str, max_batch_size: int, batch_timeout: float, threads: int | None, log_dir: Path,
                   device: str = "cpu") -> Process:
    port = free_port()
    command = [sys.executable, "-m", "bench.litserve_peer", "--model-dir", str(model_dir), "--mode", mode, "--port", str(port),
               "--max-batch-size", str(max_batch_size), "--batch-timeout", str(batch_timeout),
               "--accelerator", "cuda" if device.startswith("cuda") else "cpu"]
    if threads:
        command += ["--threads", str(threads)]
    return Process(command, {}, port, "/health", log_dir / f"litserve-{mode}-{port}.log")


@dataclass
class Timing:
    latency: float
    first_token: float
    tokens: int


async def send(client: httpx.AsyncClient, engine: str, model: str, prompt: str, length: int) -> Timing:
    started = time.perf_counter()
    first = None
    if engine.startswith("rnnserve"):
        body = {"model": model, "prompt": prompt, "max_tokens": length, "min_tokens": length, "strategy": "multinomial"}
        if engine != "rnnserve-stream":
            response = await client.post("/v1/generate", json=body)
            response.raise_for_status()
            tokens = response.json()["usage"]["completion_tokens"]
        else:
            tokens = 0
            async with client.stream("POST", "/v1/generate", json=body | {"stream": True}) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        event = json.loads(line[6:])
                        if first is None and event["choices"][0].get("token"):
                            first = time.perf_counter() - started
                        if "usage" in event:
                            tokens = event["usage"]["completion_tokens"]
    else:
        body = {"prompt": prompt, "max_tokens": length, "min_tokens": length, "seed": None}
        if engine.startswith("litserve-dynamic"):
            response = await client.post("/predict", json=body)
            response.raise_for_status()
            tokens = response.json()["completion_tokens"]
        else:
            tokens = 0
            async with client.stream("POST", "/predict", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if first is None and "text" in event:
                        first = time.perf_counter() - started
                    tokens = event.get("completion_tokens", tokens)
    latency = time.perf_counter() - started
    if tokens != length:
        raise RuntimeError(f"{engine} returned {tokens} tokens, asked for {length}")
    return Timing(latency, first if first is not None else latency, tokens)


@dataclass
class Round:
    """One engine's run of a level: the timings, its wall time and the CPU seconds its server
    and the load generator (this process) used meanwhile."""

    timings: list[Timing]
    elapsed: float
    server_cpu_s: float = math.nan
    client_cpu_s: float = math.nan


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_clients(url: str, engine: str, items: list, concurrency: int, send_one, server_cpu=None) -> Round:
    """`concurrency` clients, each on its own connection (`bench.serve.connected_clients`),
    pull items from one queue and send each with `send_one(client, item)`. The CPU time of
    the clients and (with `server_cpu`, a function returning it) the server's is counted over
    the same window as the wall time, connections already open."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    timings: list[Timing] = []
    async with connected_clients(url, concurrency, HEALTH_PATHS[engine.split("-")[0]], timeout=600) as clients:

        async def worker(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                timings.append(await send_one(client, queue.get_nowait()))

        server_before = server_cpu() if server_cpu else math.nan
        client_before, started = own_cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed, client_cpu = time.perf_counter() - started, own_cpu_seconds() - client_before
        return Round(timings, elapsed, (server_cpu() if server_cpu else math.nan) - server_before, client_cpu)


def summary(engine: str, concurrency: int, timings: list[Timing], elapsed: float, unit: str) -> dict:
    latencies = [t.latency for t in timings]
    firsts = [t.first_token for t in timings]
    done = sum(t.tokens for t in timings)
    return {"engine": engine, "concurrency": concurrency, "requests": len(timings), unit: done,
            "seconds": elapsed, f"{unit}_per_s": done / elapsed,
            "p50_s": percentile(latencies, 0.5), "p99_s": percentile(latencies, 0.99),
            "ttft_p50_s": percentile(firsts, 0.5), "ttft_p99_s": percentile(firsts, 0.99)}


async def run_level(url: str, engine: str, model: str, prompt: str, lengths: list[int], concurrency: int) -> dict:
    measured = await run_clients(url, engine, lengths, concurrency, lambda client, length: send(client, engine, model, prompt, length))
    return summary(engine, concurrency, measured.timings, measured.elapsed, "tokens")


def run_rounds(names: list[str], server_of, rounds: int, measure) -> dict[str, list[Round]]:
    """`measure(name, server)` for each name, `rounds` times in a rotating order, each server
    resumed only for its own turn (paused servers take no CPU): the paired rounds that keep this
    machine's drift out of the comparison."""
    runs: dict[str, list[Round]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            server = server_of(name)
            server.resume()
            try:
                server.wait_ready(timeout=30)
                runs[name].append(measure(name, server))
            finally:
                server.pause()
    return runs


def combine_rounds(engine: str, concurrency: int, rounds: list[Round]) -> dict:
    """One row from several rounds of the same requests: tokens/s the median of the rounds'
    (each also kept), latencies pooled; the cores the server and the client used, and the
    server's CPU time per token, medians of the rounds."""
    per_round = [sum(t.tokens for t in r.timings) / r.elapsed for r in rounds]
    row = summary(engine, concurrency, [t for r in rounds for t in r.timings], sum(r.elapsed for r in rounds), "tokens")
    return row | {"tokens_per_s": statistics.median(per_round), "tokens_per_s_rounds": per_round,
                  "tokens": row["tokens"] // len(rounds), "requests": row["requests"] // len(rounds),
                  "server_cores": statistics.median(r.server_cpu_s / r.elapsed for r in rounds),
                  "client_cores": statistics.median(r.client_cpu_s / r.elapsed for r in rounds),
                  "server_cpu_us_per_token": statistics.median(r.server_cpu_s / sum(t.tokens for t in r.timings) * 1e6 for r in rounds)}


def paired_ratios(rows: list[dict]) -> None:
    """Each rnnserve row of a level gets, per round, its tokens/s ÷ the best LitServe engine's
    in the same round (`ratio_rounds`) and their median (`ratio`)."""
    for row in rows:
        peers = [r["tokens_per_s_rounds"] for r in rows if r["engine"].startswith("litserve")]
        if row["engine"].startswith("rnnserve") and peers:
            row["ratio_rounds"] = [mine / max(p[i] for p in peers) for i, mine in enumerate(row["tokens_per_s_rounds"])]
            row["ratio"] = statistics.median(row["ratio_rounds"])


async def send_score(client: httpx.AsyncClient, engine: str, model: str, texts: list[str]) -> Timing:
    started = time.perf_counter()
    if engine.startswith("rnnserve-score"):
        response = await client.post("/v1/score", json={"model": model, "texts": texts})
    else:
        response = await client.post("/predict", json={"texts": texts})
    response.raise_for_status()
    results = response.json()["results"]
    if len(results) != len(texts) or not all(r["num_tokens"] > 0 for r in results):
        raise RuntimeError(f"{engine} scored {len(results)} of {len(texts)} texts")
    latency = time.perf_counter() - started
    return Timing(latency, latency, len(texts))


async def run_score_level(url: str, engine: str, model: str, batches: list[list[str]], concurrency: int) -> dict:
    measured = await run_clients(url, engine, batches, concurrency, lambda client, texts: send_score(client, engine, model, texts))
    return summary(engine, concurrency, measured.timings, measured.elapsed, "sentences")


def score_batches(path: Path, count: int, per_request: int, start: int = 0) -> list[list[str]]:
    """`count` requests of `per_request` sentences each, cycling through the file's text lines
    from line `start`."""
    lines = [line.strip()[:400] for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("=")] or ["the cat sat on the mat ."]
    return [[lines[(start + i * per_request + j) % len(lines)] for j in range(per_request)] for i in range(count)]


def draw_lengths(mode: str, count: int, seed: int) -> list[int]:
    low, high = LENGTHS[mode]
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(count)]


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["model"], r["lengths"]) for r in rows})
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for axis, (model, lengths) in zip(axes[0], panels):
        for engine in dict.fromkeys(r["engine"] for r in rows):
            mine = [r for r in rows if (r["model"], r["lengths"], r["engine"]) == (model, lengths, engine)]
            axis.plot([r["concurrency"] for r in mine], [r["tokens_per_s"] for r in mine], marker="o", label=engine)
        axis.set(xscale="log", xlabel="concurrent clients", ylabel="tokens / s", title=f"{model}, {lengths} lengths")
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def table(rows: list[dict]) -> str:
    lines = ["| model | lengths | clients | engine | tok/s (median of rounds) | ÷ best LitServe, median of rounds (range) | p50 / p99 s | "
             "first token p50 / p99 s | cores: server / client | server CPU µs per token |",
             "|---|---|---:|---|---:|---:|---|---|---|---:|"]
    for row in rows:
        ratio = ""
        if "ratio" in row:
            low, high = min(row["ratio_rounds"]), max(row["ratio_rounds"])
            ratio = f"{row['ratio']:.2f}×" + (f" ({low:.2f}–{high:.2f})" if len(row["ratio_rounds"]) > 1 else "")
        lines.append(f"| {row['model']} | {row['lengths']} | {row['concurrency']} | {row['engine']} | {row['tokens_per_s']:.0f} | {ratio} | "
                     f"{row['p50_s']:.3f} / {row['p99_s']:.3f} | {row['ttft_p50_s']:.3f} / {row['ttft_p99_s']:.3f} | "
                     f"{row['server_cores']:.2f} / {row['client_cores']:.2f} | {row['server_cpu_us_per_token']:.0f} |")
    return "\n".join(lines)


def score_table(rows: list[dict]) -> str:
    lines = ["| model | clients | engine | sentences/s | ÷ LitServe | p50 / p99 s |", "|---|---:|---|---:|---:|---|"]
    for row in rows:
        peers = [r["sentences_per_s"] for r in rows if r["engine"] == "litserve-score" and (r["model"], r["concurrency"]) == (row["model"], row["concurrency"])]
        ratio = f"{row['sentences_per_s'] / peers[0]:.2f}×" if peers and row["engine"].startswith("rnnserve-score") else ""
        lines.append(f"| {row['model']} | {row['concurrency']} | {row['engine']} | {row['sentences_per_s']:.0f} | {ratio} | "
                     f"{row['p50_s']:.3f} / {row['p99_s']:.3f} |")
    return "\n".join(lines)


def run_scoring(args, model: str, log_dir: Path) -> list[dict]:
    """Scoring: the same batches of sentences to /v1/score and to LitServe's dynamic batcher
    around the same scoring code."""
    rows = []
    model_dir = args.models_dir / model
    engines = ["rnnserve-score"] + (["rnnserve-score-int8"] if args.score_int8 else []) + ["litserve-score"]
    for engine in engines:
        if engine.startswith("rnnserve-score"):
            server = start_rnnserve(model_dir, args.max_batch_size, log_dir, args.device,
                                    precision="int8" if engine.endswith("int8") else "fp32")
        else:
            server = start_litserve(model_dir, "score", args.litserve_score_batch_size, args.litserve_score_batch_timeout,
                                    args.litserve_threads, log_dir, args.device)
        try:
            server.wait_ready()
            for concurrency in args.score_concurrency:
                batches = score_batches(args.score_data, max(16, args.requests_per_client * concurrency), args.texts_per_request,
                                        start=concurrency * 1000)
                row = asyncio.run(run_score_level(server.url, engine, model, batches, concurrency)) | {"model": model, "task": "score"}
                rows.append(row)
                print(f"{model} score c={concurrency:<4} {engine:<20} {row['sentences_per_s']:8.0f} sentences/s  "
                      f"p50 {row['p50_s']:.3f}  p99 {row['p99_s']:.3f}", flush=True)
        finally:
            server.stop()
    return rows


def server_key(engine: str) -> str:
    """Engines served by one server share it (the fp32 service answers rnnserve and
    rnnserve-stream; rnnserve-int8 is a server of its own)."""
    if engine == "rnnserve-int8":
        return engine
    return "rnnserve" if engine.startswith("rnnserve") else engine


def start_engine(engine: str, model_dir: Path, args: argparse.Namespace, log_dir: Path) -> Process:
    if engine.startswith("rnnserve"):
        return start_rnnserve(model_dir, args.max_batch_size, log_dir, args.device, precision="int8" if engine == "rnnserve-int8" else "fp32")
    mode, _, size_given = engine.removeprefix("litserve-").partition("-")
    size = int(size_given) if size_given else args.litserve_batch_size if mode == "dynamic" else args.max_batch_size
    return start_litserve(model_dir, mode, size, args.litserve_batch_timeout, args.litserve_threads, log_dir, args.device)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--models", nargs="+", default=["wikitext2-lstm", "shakespeare-char-lstm"], help="model ids to measure")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "weights", help="where the model ids are found")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128], help="concurrent clients at each level")
    parser.add_argument("--lengths", nargs="+", default=["equal", "mixed"], choices=list(LENGTHS),
                        help="equal: 64 tokens per request; mixed: drawn from 16..128")
    parser.add_argument("--engines", nargs="*", default=["rnnserve", "rnnserve-stream", "litserve-dynamic", "litserve-dynamic-128", "litserve-continuous"],
                        help="generation engines (none: scoring only)")
    parser.add_argument("--requests-per-client", type=int, default=3,
                        help="requests each client sends per round (at least 16 per level in all)")
    parser.add_argument("--rounds", type=int, default=3, help="times each level runs every engine (the median is reported)")
    parser.add_argument("--max-batch-size", type=int, default=128, help="live sequences per step, both servers")
    parser.add_argument("--litserve-batch-size", type=int, default=32, help="LitServe's dynamic max_batch_size")
    parser.add_argument("--litserve-batch-timeout", type=float, default=0.02,
                        help="seconds LitServe's dynamic batcher waits to fill a batch")
    parser.add_argument("--litserve-threads", type=int, default=None, help="torch threads in LitServe's worker (default: torch's)")
    parser.add_argument("--score-concurrency", type=int, nargs="*", default=[1, 8, 32], help="clients for scoring (none: skip)")
    parser.add_argument("--score-int8", action="store_true",
                        help="also score through a server computing in int8 (rnnserve-score-int8)")
    parser.add_argument("--texts-per-request", type=int, default=8, help="sentences in each scoring request")
    parser.add_argument("--score-data", type=Path, default=SCORE_DATA, help="sentences to score, one per line")
    parser.add_argument("--litserve-score-batch-size", type=int, default=8, help="requests per LitServe scoring batch")
    parser.add_argument("--litserve-score-batch-timeout", type=float, default=0.005,
                        help="seconds LitServe's scoring batcher waits to fill a batch")
    parser.add_argument("--prompt", default=None, help="the prompt of every request (default: each model's example prompt)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where both servers run the model")
    parser.add_argument("--label", default="cpu", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the result files go")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.score_concurrency and not args.score_data.is_file():
        parser.error(f"no sentences to score at {args.score_data} (give --score-data, or --score-concurrency with no value)")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="rnnserve-peers-"))  # the servers' logs, if one fails
    rows: list[dict] = []
    for model in args.models:
        model_dir = args.models_dir / model
        prompt = args.prompt or PROMPTS.get(model, "The")
        servers: dict[str, Process] = {}
        try:
            for engine in args.engines:  # all started and warmed up, then paused until their turn
                if server_key(engine) not in servers:
                    servers[server_key(engine)] = start_engine(engine, model_dir, args, log_dir)
            for engine in args.engines:
                server = servers[server_key(engine)]
                server.wait_ready()
                asyncio.run(run_level(server.url, engine, model, prompt, [16] * 8, 4))
            for server in servers.values():
                server.pause()
            for lengths in args.lengths:
                for concurrency in args.concurrency:
                    count = max(16, args.requests_per_client * concurrency)
                    drawn = draw_lengths(lengths, count, seed=concurrency)
                    runs = run_rounds(args.engines, lambda engine: servers[server_key(engine)], args.rounds, lambda engine, server: asyncio.run(
                        run_clients(server.url, engine, drawn, concurrency, lambda client, length: send(client, engine, model, prompt, length),
                                    server.cpu_seconds)))
                    level = [combine_rounds(engine, concurrency, runs[engine]) | {"model": model, "lengths": lengths, "task": "generate"}
                             for engine in args.engines]
                    paired_ratios(level)
                    rows.extend(level)
                    for row in level:
                        print(f"{model} {lengths:>5} c={concurrency:<4} {row['engine']:<20} {row['tokens_per_s']:8.0f} tok/s  "
                              f"p50 {row['p50_s']:.3f}  p99 {row['p99_s']:.3f}  ttft p99 {row['ttft_p99_s']:.3f}  "
                              f"cores {row['server_cores']:.2f} / client {row['client_cores']:.2f}  {row['server_cpu_us_per_token']:.0f} µs/token"
                              + (f"  ÷ LitServe {row['ratio']:.2f}" if "ratio" in row else ""), flush=True)
        finally:
            for server in servers.values():
                server.stop()
    rows.sort(key=lambda r: (args.models.index(r["model"]), args.lengths.index(r["lengths"]), r["concurrency"], args.engines.index(r["engine"])))
    score_rows = [row for model in args.models for row in run_scoring(args, model, log_dir)] if args.score_concurrency else []
    header = (f"rnnserve against LitServe on the same weights, {args.requests_per_client} requests per client (at least 16), "
              f"{args.rounds} rounds per level, "
              f"LitServe dynamic max_batch_size {args.litserve_batch_size} / batch_timeout {args.litserve_batch_timeout} s, "
              f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), models on {args.device}")
    text = header + "\n\n" + table(rows)
    if score_rows:
        text += (f"\n\nScoring, {args.texts_per_request} sentences per request (WikiText-2 validation lines), "
                 f"LitServe max_batch_size {args.litserve_score_batch_size} requests / batch_timeout {args.litserve_score_batch_timeout} s:\n\n"
                 + score_table(score_rows))
    print("\n" + text)
    (args.output_dir / f"peers-{args.label}.md").write_text(text + "\n")
    (args.output_dir / f"peers-{args.label}.json").write_text(json.dumps({"rows": rows, "score_rows": score_rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    plot(rows, args.output_dir / f"peers-{args.label}.png", header)
    print(f"wrote {args.output_dir}/peers-{args.label}.md, .json and .png")
    return rows + score_rows


if __name__ == "__main__":
    main()
