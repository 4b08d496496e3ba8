"""Soak test: N concurrent clients for M seconds mixing generate, stream, cancel, score and
caption against a real uvicorn; reports requests, errors by status, p50/p99 and the server's
resident memory (process and workers) at start and end, and fails when a request got no
answer, when any answer was a 5xx, or when memory grew without bound.

    .venv/bin/python -m bench.soak --clients 16 --seconds 600        # starts its own server on weights/
    .venv/bin/python -m bench.soak --url http://127.0.0.1:8000 ...   # or drives a running one
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from training.cli import parser_for

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("generate", "stream", "cancel", "score", "caption")


def resident_bytes(pid: int) -> int:
    """RSS of a process and all its descendants (the workers), from /proc."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending += [int(child) for child in children]
        except (OSError, StopIteration):
            continue
    return total


def test_image() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 120), (250, 250, 245))
    ImageDraw.Draw(image).ellipse((40, 20, 120, 100), fill=(200, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


async def one_request(client: httpx.AsyncClient, kind: str, models: dict, rng: random.Random, image: bytes) -> tuple[str, int | str, float]:
    started = time.perf_counter()
    lm = models.get("language_model")
    try:
        if kind == "generate":
            response = await client.post("/v1/generate", json={"model": lm, "prompt": rng.choice(["the", "ROMEO:", "a small"]), "max_tokens": rng.randint(4, 40), "strategy": rng.choice(["argmax", "top_k", "multinomial"]), "seed": rng.choice([None, rng.randint(0, 5)])})
            status = response.status_code
        elif kind in ("stream", "cancel"):
            async with client.stream("POST", "/v1/generate", json={"model": lm, "prompt": "the", "max_tokens": 64, "stream": True}) as response:
                status = response.status_code
                lines = 0
                async for line in response.aiter_lines():
                    lines += line.startswith("data:")
                    if kind == "cancel" and lines >= 3:
                        break  # hang up mid-stream: the server must free the slot
        elif kind == "score":
            response = await client.post("/v1/score", json={"model": lm, "texts": ["the cat sat on the mat .", "mat the on sat cat the", f"line {rng.randint(0, 9999)}"]})
            status = response.status_code
        else:
            if "captioner" not in models:
                return kind, "skipped", 0.0
            response = await client.post("/v1/caption", files={"image": ("photo.jpg", image, "image/jpeg")}, data={"strategy": rng.choice(["beam", "argmax"])})
            status = response.status_code
    except httpx.HTTPError as error:
        status = f"no answer: {error.__class__.__name__}"
    return kind, status, time.perf_counter() - started


async def soak(url: str, clients: int, seconds: float, seed: int, server_pid: int | None) -> dict:
    image = test_image()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients + 8)) as client:
        cards = (await client.get("/v1/models")).json()["data"]
        models = {card["type"]: card["id"] for card in cards if card.get("default")}
        rss_start = resident_bytes(server_pid) if server_pid else None
        deadline = time.perf_counter() + seconds
        results: list[tuple[str, int | str, float]] = []

        async def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.perf_counter() < deadline:
                results.append(await one_request(client, rng.choice(KINDS), models, rng, image))

        await asyncio.gather(*(worker(i) for i in range(clients)))
        await asyncio.sleep(1.0)
        rss_end = resident_bytes(server_pid) if server_pid else None
    latencies = sorted(r[2] for r in results if r[1] == 200)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * (len(latencies) - 1)))] if latencies else float("nan")
    statuses = Counter(str(r[1]) for r in results)
    by_kind = Counter(r[0] for r in results if r[1] != "skipped")
    unanswered = sum(1 for r in results if isinstance(r[1], str) and r[1].startswith("no answer"))
    server_errors = sum(1 for r in results if isinstance(r[1], int) and r[1] >= 500)
    report = {"clients": clients, "seconds": seconds, "requests": sum(by_kind.values()), "by_kind": dict(by_kind), "statuses": dict(statuses),
              "p50_s": round(pick(0.5), 4), "p99_s": round(pick(0.99), 4), "unanswered": unanswered, "server_errors": server_errors,
              "rss_start_mb": rss_start and round(rss_start / 2**20, 1), "rss_end_mb": rss_end and round(rss_end / 2**20, 1)}
    growth_ok = rss_start is None or rss_end <= rss_start * 1.5 + 100 * 2**20
    report["ok"] = unanswered == 0 and server_errors == 0 and growth_ok and report["requests"] > 0
    return report


def start_server(models_dir: str) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"RNNSERVE_MODELS_DIR": models_dir, "RNNSERVE_SERVE_SHIPPED_MODELS": "false", "RNNSERVE_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--url", help="a running server to drive (default: start one)")
    parser.add_argument("--models-dir", default=str(ROOT / "weights"), help="the models directory of the server it starts")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=30, help="how long the clients run")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the clients' request mix")
    parser.add_argument("--output", type=Path, default=None, help="also write the report as JSON here (default: printed only)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    process = None
    url, pid = args.url, None
    if url is None:
        process, url = start_server(args.models_dir)
        pid = process.pid
    try:
        report = asyncio.run(soak(url, args.clients, args.seconds, args.seed, pid))
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    if not report["ok"]:
        raise SystemExit("soak failed: " + json.dumps(report))
    return report


if __name__ == "__main__":
    main()
