"""Two real uvicorn replicas sharing one real Redis, as a load balancer would use them: the
cache and the rate limits are shared, and a replica stopped under load loses no request."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.conftest import start_server

KEYS = {"RNNSERVE_API_KEYS": "key-one,key-two"}
ONE, TWO = ({"Authorization": "Bearer key-one"}, {"Authorization": "Bearer key-two"})


@pytest.fixture()
def start_replicas(tmp_path, tiny_models_dir, redis_server):
    started = []

    def start(**env: str):
        pair = [start_server(tmp_path, tiny_models_dir, RNNSERVE_REDIS_URL=redis_server.url, **KEYS, **env) for _ in range(2)]
        started.extend(pair)
        return pair

    yield start
    for server in started:
        server.stop()


def test_a_result_computed_on_one_replica_is_a_cache_hit_on_the_other(start_replicas):
    first, second = start_replicas()
    body = {"prompt": "the cat", "max_tokens": 12, "strategy": "argmax"}
    computed = httpx.post(first.base_url + "/v1/generate", json=body, headers=ONE, timeout=30).json()
    hit = httpx.post(second.base_url + "/v1/generate", json=body, headers=ONE, timeout=30).json()
    assert (computed["cached"], hit["cached"]) == (False, True)
    assert hit["choices"] == computed["choices"]
    score = {"texts": ["the dog sat on the mat ."]}
    assert httpx.post(second.base_url + "/v1/score", json=score, headers=ONE).json()["cached"] is False
    assert httpx.post(first.base_url + "/v1/score", json=score, headers=ONE).json()["cached"] is True


def test_one_keys_rate_limit_holds_across_replicas(start_replicas):
    # A bucket of 6 that refills one request every 20 s: 12 requests alternating between the
    # replicas get 6 answers, not 6 from each.
    replicas = start_replicas(RNNSERVE_RATE_LIMIT_PER_SECOND="0.05", RNNSERVE_RATE_LIMIT_BURST="6")
    statuses = [httpx.get(replicas[i % 2].base_url + "/v1/models", headers=ONE).status_code for i in range(12)]
    assert statuses.count(200) == 6 and statuses.count(429) == 6, statuses
    assert statuses[:6] == [200] * 6
    # Buckets are per key: the other key still has its own.
    assert httpx.get(replicas[1].base_url + "/v1/models", headers=TWO).status_code == 200


@dataclass
class Outcome:
    replica: int
    finished_at: float
    attempts: int
    retried_because: list[str] = field(default_factory=list)


RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class RoundRobinClient:
    """What a load balancer with retries does: send each request to the next replica; a
    refused connection, a connection closed before any response, or a 503 is retried on the
    other replica. Anything else that is not a complete answer is a lost request."""

    def __init__(self, replicas, tokens: int) -> None:
        self.replicas, self.tokens = replicas, tokens
        self.turn = 0
        self.lock = threading.Lock()

    def next_replica(self) -> int:
        with self.lock:
            self.turn += 1
            return self.turn % len(self.replicas)

    def request(self, stream: bool) -> Outcome:
        first = self.next_replica()
        body = {"prompt": "the cat", "max_tokens": self.tokens, "min_tokens": self.tokens, "strategy": "multinomial", "stream": stream}
        reasons: list[str] = []
        for attempt in range(4):
            replica = (first + attempt) % len(self.replicas)
            try:
                if self._send(self.replicas[replica].base_url, body, stream):
                    return Outcome(replica, time.monotonic(), attempt + 1, reasons)
                reasons.append("503")
            except RETRYABLE as error:
                reasons.append(type(error).__name__)
        raise AssertionError(f"no replica answered: {reasons}")

    def _send(self, base_url: str, body: dict, stream: bool, streaming: threading.Event | None = None) -> bool:
        """True for a complete answer, False for a retryable refusal; raises otherwise."""
        with httpx.Client(base_url=base_url, headers=ONE, timeout=60) as client:
            if not stream:
                response = client.post("/v1/generate", json=body)
                if response.status_code == 503:
                    return False
                assert response.status_code == 200, response.text
                assert response.json()["usage"]["completion_tokens"] == self.tokens
                return True
            with client.stream("POST", "/v1/generate", json=body) as response:
                if response.status_code == 503:
                    return False
                assert response.status_code == 200, response.read()
                lines = []
                try:
                    for line in response.iter_lines():
                        if line:
                            lines.append(line)
                            if streaming is not None:
                                streaming.set()
                except httpx.HTTPError as error:  # after the 200: never retryable, the answer was cut
                    raise AssertionError(f"stream cut off after {len(lines)} lines: {error!r}") from error
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]
            assert lines and lines[-1] == "data: [DONE]", f"stream ended without [DONE]: {lines[-2:]}"
            assert "error" not in events[-1], events[-1]
            assert events[-1]["usage"]["completion_tokens"] == self.tokens
            return True


def test_a_replica_stopped_under_load_loses_no_request(start_replicas):
    replicas = start_replicas()
    client = RoundRobinClient(replicas, tokens=300)
    outcomes: list[Outcome] = []
    failures: list[str] = []

    def user(index: int) -> None:
        for request in range(6):
            try:
                outcomes.append(client.request(stream=(index + request) % 2 == 0))
            except AssertionError as error:
                failures.append(str(error))

    # A long stream on the replica that will be stopped, mid-answer when the signal comes.
    streaming = threading.Event()

    def long_stream() -> None:
        long = RoundRobinClient(replicas, tokens=1000)
        body = {"prompt": "the cat", "max_tokens": 1000, "min_tokens": 1000, "stream": True}
        try:
            assert long._send(replicas[0].base_url, body, stream=True, streaming=streaming)
        except (AssertionError, httpx.HTTPError) as error:
            failures.append(f"long stream: {error!r}")

    users = [threading.Thread(target=user, args=(i,)) for i in range(8)] + [threading.Thread(target=long_stream)]
    for thread in users:
        thread.start()
    assert streaming.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = httpx.get(replicas[0].base_url + "/readyz").json()["workers"]
        if workers[0]["in_flight"] >= 4:
            break
        time.sleep(0.02)
    stopped_at = time.monotonic()
    replicas[0].process.terminate()  # SIGTERM, as Kubernetes sends it
    for thread in users:
        thread.join(180)
    assert failures == []
    # uvicorn drains, then re-raises the signal: the exit is "killed by SIGTERM" after the drain.
    replicas[0].process.wait(60)
    assert "Finished server process" in replicas[0].log_path.read_text()
    assert len(outcomes) == 8 * 6
    # The scenario happened: requests the stopped replica held finished there after the
    # signal, and requests sent to it afterwards were retried on the other one.
    assert any(o.replica == 0 and o.finished_at > stopped_at for o in outcomes)
    assert any(o.attempts > 1 for o in outcomes)
    assert all(o.replica == 1 for o in outcomes if o.attempts > 1)
