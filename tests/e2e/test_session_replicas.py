"""Sessions across two real uvicorn replicas sharing one real Redis: a session started on one
replica, that replica stopped (SIGTERM) or killed, continues on the other with the scores of
the whole text; and a session stays invisible to another key on any replica."""
from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import start_server

KEYS = {"RNNSERVE_API_KEYS": "key-one,key-two"}
ONE, TWO = ({"Authorization": "Bearer key-one"}, {"Authorization": "Bearer key-two"})
TEXT = "the old man looked at a red car . the dog ran to the river ."


@pytest.fixture()
def replicas(tmp_path, tiny_models_dir, redis_server):
    pair = [start_server(tmp_path, tiny_models_dir, RNNSERVE_REDIS_URL=redis_server.url, **KEYS) for _ in range(2)]
    yield pair
    for server in pair:
        server.stop()


def score_piece(base_url: str, session: str, text: str, add_eos: bool = False) -> list[float]:
    response = httpx.post(f"{base_url}/v1/sessions/{session}/score", json={"text": text, "add_eos": add_eos}, headers=ONE, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token_logprobs"]


@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_a_session_continues_on_the_other_replica_after_its_replica_is_gone(replicas, stop):
    first, second = replicas
    pieces = re.split(r"(?= )", TEXT)
    session = httpx.post(first.base_url + "/v1/sessions", json={}, headers=ONE, timeout=30).json()["id"]
    got = []
    for piece in pieces[:6]:
        got += score_piece(first.base_url, session, piece)
    fork = httpx.post(f"{first.base_url}/v1/sessions/{session}/fork", headers=ONE, timeout=30).json()["id"]
    getattr(first.process, stop)()  # SIGTERM, as Kubernetes sends it, or SIGKILL
    first.process.wait(60)
    for index, piece in enumerate(pieces[6:]):
        got += score_piece(second.base_url, session, piece, add_eos=index == len(pieces) - 7)
    whole = httpx.post(second.base_url + "/v1/score", json={"texts": [TEXT]}, headers=ONE, timeout=30).json()
    assert got == pytest.approx(whole["results"][0]["token_logprobs"], abs=1e-5)
    # The fork made on the lost replica is there too, where its parent was when it was made.
    assert score_piece(second.base_url, fork, "".join(pieces[6:])) == pytest.approx(got[6:len(got) - 1], abs=1e-5)
    # Another key sees no such session, on the replica that holds it as on any other.
    assert httpx.post(f"{second.base_url}/v1/sessions/{session}/next", json={}, headers=TWO).status_code == 404
