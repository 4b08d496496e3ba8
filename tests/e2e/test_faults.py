"""Faults under load against a real uvicorn: Redis dying and coming back, a worker process
killed, and SIGTERM (graceful drain)."""
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import start_server


def run_load(url: str, stop: threading.Event, outcomes: list, body_for) -> list[threading.Thread]:
    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            count = 0
            while not stop.is_set():
                count += 1
                path, body = body_for(index, count)
                try:
                    outcomes.append(http.post(path, json=body).status_code)
                except httpx.HTTPError as error:
                    outcomes.append(error.__class__.__name__)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    return threads


def test_redis_killed_during_load_and_restarted(tmp_path, tiny_models_dir, redis_server):
    server = start_server(tmp_path, tiny_models_dir, RNNSERVE_REDIS_URL=redis_server.url)
    outcomes: list = []
    stop = threading.Event()
    body_for = lambda i, n: ("/v1/score", {"texts": [f"the cat sat on the mat {n % 7} ."]}) if n % 2 else \
        ("/v1/generate", {"prompt": "the dog", "max_tokens": 5, "strategy": "argmax", "seed": n % 5})
    try:
        threads = run_load(server.base_url, stop, outcomes, body_for)
        time.sleep(1.5)
        redis_server.stop()
        time.sleep(2.0)
        redis_server.start()
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        server.stop()
    assert len(outcomes) > 50
    assert set(outcomes) == {200}, {o for o in outcomes if o != 200}


def test_worker_killed_under_load(tmp_path, tiny_models_dir):
    server = start_server(tmp_path, tiny_models_dir, RNNSERVE_MAX_NEW_TOKENS="5000")
    outcomes: list = []
    stop = threading.Event()
    body_for = lambda i, n: ("/v1/generate", {"prompt": "the cat", "max_tokens": 3000, "min_tokens": 3000, "strategy": "multinomial"})
    try:
        threads = run_load(server.base_url, stop, outcomes, body_for)
        time.sleep(1.0)
        pid = httpx.get(server.base_url + "/readyz").json()["workers"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "a request hung"
        assert 503 in outcomes
        assert set(outcomes) <= {200, 503}, outcomes
        deadline = time.monotonic() + 60
        while httpx.get(server.base_url + "/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        after = httpx.post(server.base_url + "/v1/generate", json={"prompt": "the cat", "max_tokens": 5}, timeout=30)
        assert after.status_code == 200
    finally:
        server.stop()


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(tmp_path, tiny_models_dir):
    server = start_server(tmp_path, tiny_models_dir, RNNSERVE_MAX_NEW_TOKENS="50000")
    results: list = []

    def long_request() -> None:
        body = {"prompt": "the cat", "max_tokens": 8000, "min_tokens": 8000, "strategy": "argmax"}
        try:
            response = httpx.post(server.base_url + "/v1/generate", json=body, timeout=60)
            results.append((response.status_code, response.json()["usage"]["completion_tokens"]))
        except httpx.HTTPError as error:
            results.append(error.__class__.__name__)

    threads = [threading.Thread(target=long_request) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while httpx.get(server.base_url + "/readyz").json()["workers"][0]["in_flight"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        refused = httpx.post(server.base_url + "/v1/generate", json={"prompt": "the cat", "max_tokens": 2}, timeout=5).status_code
    except httpx.HTTPError:
        refused = "refused"
    for thread in threads:
        thread.join(60)
    server.process.wait(60)
    server.stop()
    assert results == [(200, 8000)] * 3  # the in-flight requests finished
    assert refused in ("refused", 503)


def test_workers_exit_when_the_server_is_killed(tmp_path, tiny_models_dir):
    """SIGKILL (or the OOM killer) gives the server no chance to stop its workers; they notice
    they were orphaned and exit rather than hold their memory."""
    server = start_server(tmp_path, tiny_models_dir)
    pids = [w["pid"] for w in httpx.get(server.base_url + "/readyz").json()["workers"]]
    server.process.kill()
    server.process.wait(10)
    server.stop()

    def running(pid: int) -> bool:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "State:\tZ" not in status  # a zombie has exited; only its parent's reaping is left

    deadline = time.monotonic() + 10
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids and not any(running(pid) for pid in pids)
