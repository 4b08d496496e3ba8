"""One request id end to end, on a real uvicorn: the client's x-request-id is the id of the
response body and header, of the worker's log line, of the latency exemplar on /metrics, and the
handle that aborts the request (DELETE /v1/requests/{id})."""
import threading
import time

import httpx
import pytest

from tests.e2e.conftest import start_server


@pytest.fixture(scope="module")
def id_server(tmp_path_factory, tiny_models_dir):
    server = start_server(tmp_path_factory.mktemp("ids"), tiny_models_dir, RNNSERVE_MAX_NEW_TOKENS="100000",
                          RNNSERVE_REQUEST_TIMEOUT_S="120")
    yield server
    server.stop()


def test_the_clients_id_names_the_request_everywhere(id_server):
    with httpx.Client(base_url=id_server.base_url, timeout=60) as client:
        response = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 5, "seed": 3},
                               headers={"x-request-id": "client-id-42"})
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "client-id-42"
        assert response.json()["id"] == "client-id-42"
        completion = client.post("/v1/completions", json={"prompt": ["the cat", "a bird"], "max_tokens": 3, "seed": 1},
                                 headers={"x-request-id": "client-id-43"})
        assert completion.json()["id"] == "client-id-43"
        metrics = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}).text
    assert 'request_id="client-id-42"' in metrics
    deadline = time.monotonic() + 10
    while "request client-id-42: generate" not in id_server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = id_server.log_path.read_text()
    assert "request client-id-42: generate" in log  # the worker's own log line
    assert "request client-id-43/1: generate" in log  # the second prompt's job is a part of the same request


def test_a_route_aborts_a_request_by_its_id(id_server):
    outcome: dict = {}

    def long_generation() -> None:
        with httpx.Client(base_url=id_server.base_url, timeout=120) as client:
            outcome["response"] = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 50000, "min_tokens": 50000},
                                              headers={"x-request-id": "long-running-1"})

    worker = threading.Thread(target=long_generation)
    worker.start()
    with httpx.Client(base_url=id_server.base_url, timeout=30) as client:
        deadline = time.monotonic() + 30
        while True:
            aborted = client.delete("/v1/requests/long-running-1")
            if aborted.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the request has not reached the engine yet
        assert aborted.status_code == 200 and aborted.json() == {"id": "long-running-1", "aborted": True}
        worker.join(60)
        assert not worker.is_alive()
        assert outcome["response"].status_code >= 400 and "aborted" in outcome["response"].text
        assert client.delete("/v1/requests/long-running-1").status_code == 404
        assert client.post("/v1/generate", json={"prompt": "the dog", "max_tokens": 3, "strategy": "argmax"}).status_code == 200
