"""Production behaviour through the HTTP API: streaming, queue limits, worker crashes,
cancellation, the cache (in process and a real Redis), API keys, rate limits and metrics."""
import json
import os
import signal
import threading
import time

import pytest


def read_sse(response) -> list:
    """Parse an SSE body: blank-line separated events of `data: ...` lines."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert all(line.startswith("data: ") for line in lines), block
        payload = "\n".join(line[len("data: "):] for line in lines)
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def wait_until(condition, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def test_sse_wire_format_and_same_text_as_json(client):
    request = {"prompt": "the old man", "max_tokens": 12, "strategy": "argmax"}
    plain = client.post("/v1/generate", json=request).json()
    events = read_sse(client.post("/v1/generate", json=request | {"stream": True}))
    assert events[-1] == "[DONE]"
    final = events[-2]
    token_events = events[:-2]
    assert len(token_events) == len(plain["choices"][0]["tokens"])
    assert all(set(e["choices"][0]) == {"index", "text", "token"} for e in token_events)
    assert "".join(e["choices"][0]["text"] for e in token_events) == plain["choices"][0]["text"]
    assert final["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert final["usage"] == plain["usage"]


def test_stream_of_a_bad_request_gets_a_status_code(client):
    response = client.post("/v1/generate", json={"prompt": "x " * 5000, "stream": True})
    assert response.status_code == 422 and response.json()["error"]["param"] == "prompt"


def test_cache_hit_returns_an_identical_body(client):
    request = {"prompt": "a small child", "max_tokens": 9, "strategy": "top_k", "seed": 99}
    first = client.post("/v1/generate", json=request).json()
    second = client.post("/v1/generate", json=request).json()
    assert second["cached"] is True
    strip = lambda body: {k: v for k, v in body.items() if k not in ("id", "cached")}
    assert strip(first) == strip(second)


def metric(client, prefix: str) -> float:
    """The value of the metric line starting with `prefix` (0 before it is first counted)."""
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_identical_concurrent_requests_compute_once(make_client):
    client = make_client()
    request = {"texts": ["the dog slept near the river ."] * 3}
    score_batches = 'rnnserve_batch_size_count{kind="score"}'
    before = metric(client, score_batches)
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.post("/v1/score", json=request).json())) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 6 and len({json.dumps(r["results"]) for r in results}) == 1
    assert metric(client, score_batches) - before == 1.0  # one score batch for six identical requests


def test_queue_full_answers_429_with_retry_after(make_client):
    client = make_client(max_in_flight_per_worker=1)
    started = threading.Event()

    def long_request():
        with client.stream("POST", "/v1/generate", json={"prompt": "the cat", "max_tokens": 1000, "min_tokens": 1000, "stream": True}) as response:
            for _ in response.iter_lines():
                started.set()

    thread = threading.Thread(target=long_request)
    thread.start()
    assert started.wait(30)
    response = client.post("/v1/generate", json={"prompt": "the dog", "max_tokens": 3})
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["type"] == "rate_limit_error"
    thread.join(60)
    assert client.post("/v1/generate", json={"prompt": "the dog", "max_tokens": 3}).status_code == 200


def test_killed_worker_fails_its_requests_with_503_then_recovers(make_client):
    client = make_client(worker_mode="process")
    pid = client.get("/readyz").json()["workers"][0]["pid"]
    outcome = {}

    def long_request():
        outcome["response"] = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 1000, "min_tokens": 1000})

    thread = threading.Thread(target=long_request)
    thread.start()
    assert wait_until(lambda: client.get("/readyz").json().get("workers", [{}])[0].get("live_sequences", 0) > 0)
    os.kill(pid, signal.SIGKILL)
    thread.join(30)
    assert outcome["response"].status_code == 503
    assert "died" in outcome["response"].json()["error"]["message"]
    assert wait_until(lambda: client.get("/readyz").status_code == 200)
    assert client.get("/readyz").json()["workers"][0]["pid"] != pid
    assert client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 3}).status_code == 200
    assert "rnnserve_worker_restarts_total 1.0" in client.get("/metrics").text


def test_client_disconnect_frees_the_slot(make_client):
    client = make_client()
    with client.stream("POST", "/v1/generate", json={"prompt": "the cat", "max_tokens": 1000, "min_tokens": 1000, "stream": True}) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
        assert client.get("/readyz").json()["workers"][0]["live_sequences"] == 1
    # closing the stream disconnects: the worker drops the sequence at its next step
    assert wait_until(lambda: client.get("/readyz").json()["workers"][0]["live_sequences"] == 0)
    assert client.get("/readyz").json()["workers"][0]["in_flight"] == 0


def test_timeout_answers_504(make_client):
    # 1,000 tokens take the tiny model about 0.1 s; the limit is a fifth of that.
    client = make_client(request_timeout_s=0.02)
    response = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 1000, "min_tokens": 1000})
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"


def test_redis_cache_and_redis_going_away(make_client, redis_server):
    client = make_client(redis_url=redis_server.url)
    request = {"texts": ["the cat sat on the mat ."]}
    assert client.post("/v1/score", json=request).json()["cached"] is False
    assert client.post("/v1/score", json=request).json()["cached"] is True
    import redis

    assert any(key.startswith(b"rnnserve:v1:") for key in redis.Redis(port=redis_server.port).keys())
    redis_server.stop()
    for text in ("a bird ran to the door .", "the cat sat on the mat ."):
        response = client.post("/v1/score", json={"texts": [text]})
        assert response.status_code == 200 and response.json()["cached"] is False
    redis_server.start()  # an empty Redis again on the same port: the service reconnects by itself
    fresh = {"texts": ["my friend walked past a tree ."]}

    def cached_again():
        client.post("/v1/score", json=fresh)
        return client.post("/v1/score", json=fresh).json()["cached"]

    assert wait_until(cached_again, timeout=20, interval=0.3)


def test_api_keys(make_client):
    client = make_client(api_keys="secret-one,secret-two")
    assert client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 2}).status_code == 401
    wrong = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 2}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    ok = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 2}, headers={"Authorization": "Bearer secret-two"})
    assert ok.status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer secret-one"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(open_path).status_code == 200


@pytest.mark.parametrize("with_redis", [False, True])
def test_rate_limit_per_key(make_client, request, with_redis):
    overrides = {"api_keys": "k1,k2", "rate_limit_per_second": 0.5, "rate_limit_burst": 3}
    if with_redis:
        overrides["redis_url"] = request.getfixturevalue("redis_server").url
    client = make_client(**overrides)
    k1, k2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}
    statuses = [client.get("/v1/models", headers=k1).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    limited = client.get("/v1/models", headers=k1)
    assert int(limited.headers["retry-after"]) >= 1
    assert client.get("/v1/models", headers=k2).status_code == 200  # its own bucket


def test_metrics_and_request_ids(client):
    client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 4, "strategy": "argmax"})
    response = client.get("/v1/models", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    text = client.get("/metrics").text
    for name in ("rnnserve_requests_total", "rnnserve_queue_depth", "rnnserve_batch_size_bucket", "rnnserve_time_to_first_token_seconds_bucket",
                 "rnnserve_inter_token_seconds_bucket", "rnnserve_tokens_generated_total", "rnnserve_cache_lookups_total",
                 "rnnserve_worker_restarts_total"):
        assert name in text, name
    assert 'endpoint="/v1/generate",method="POST",status="200"' in text


def test_a_repeated_prompt_is_read_from_the_prompt_cache(make_client):
    """Two requests with one prompt (different answers, so the result cache does not answer
    the second): the worker reads the prompt once, and /metrics counts the tokens it reused."""
    client = make_client()
    reused = 'rnnserve_prompt_tokens_total{source="cache"}'
    before = metric(client, reused)
    for max_tokens in (3, 4):
        response = client.post("/v1/generate", json={"prompt": "a small child looked at the old", "max_tokens": max_tokens, "strategy": "argmax"})
        assert response.status_code == 200
    assert metric(client, reused) - before == response.json()["usage"]["prompt_tokens"] + 1  # and the start token
