"""/v1/sessions against the app with real workers: a text scored through a session in pieces
equals /v1/score of the whole (word and character models), forks are independent, the batch
forms equal the single ones, next-token answers agree with scoring, generation continues the
state, sessions are bound to their model's revision and to their caller's key, and every
mistake is a clear 4xx."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import SHIPPED_MODELS

TEXT = "the old man looked at a red car . the dog ran to the river ."


def whole(client, text: str, add_eos: bool = False, model: str | None = None, **extra) -> list[float]:
    body = {"texts": [text], "add_eos": add_eos} | ({"model": model} if model else {})
    response = client.post("/v1/score", json=body, **extra)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["token_logprobs"]


def start(client, model: str | None = None, **extra) -> str:
    body = {"model": model} if model else {}
    response = client.post("/v1/sessions", json=body, **extra)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def word_pieces(text: str) -> list[str]:
    """Cut at whitespace, each space kept at the start of the piece after it."""
    return re.split(r"(?= )", text)


def through_session(client, session: str, pieces: list[str], add_eos: bool = False) -> list[float]:
    values: list[float] = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        response = client.post(f"/v1/sessions/{session}/score", json={"text": piece, "add_eos": add_eos and last})
        assert response.status_code == 200, response.text
        values += response.json()["token_logprobs"]
    return values


@pytest.mark.parametrize("cut", ["words", "chunks"])
def test_scoring_in_pieces_equals_scoring_whole_word_model(client, cut):
    pieces = word_pieces(TEXT)
    if cut == "chunks":
        pieces = ["".join(pieces[i : i + 3]) for i in range(0, len(pieces), 3)]
    got = through_session(client, start(client), pieces, add_eos=True)
    assert got == pytest.approx(whole(client, TEXT, add_eos=True), abs=1e-5)


def test_an_unknown_word_is_spelled_as_in_score(client):
    text = "the zebra sat on the mat ."
    got = through_session(client, start(client), word_pieces(text))
    assert got == pytest.approx(whole(client, text), abs=1e-5)


@pytest.fixture(scope="module")
def char_client(tmp_path_factory):
    from tests.api.conftest import open_client

    directory = tmp_path_factory.mktemp("char-models")
    shutil.copytree(SHIPPED_MODELS / "shakespeare-char-lstm", directory / "shakespeare-char-lstm")
    client = open_client(directory)
    yield client
    client.__exit__(None, None, None)


def test_scoring_in_pieces_equals_scoring_whole_character_model(char_client):
    text = "ROMEO:\nBut soft, what light through yonder window breaks?"
    session = start(char_client, "shakespeare-char-lstm")
    got = through_session(char_client, session, word_pieces(text), add_eos=True)
    assert got == pytest.approx(whole(char_client, text, add_eos=True, model="shakespeare-char-lstm"), abs=1e-5)


def test_a_context_is_read_as_the_previous_sentence(client):
    with_context = client.post("/v1/sessions", json={"context": "the cat sat on the mat ."}).json()
    read_first = start(client)
    through_session(client, read_first, ["the cat sat on the mat ."], add_eos=True)
    assert client.get(f"/v1/sessions/{read_first}").json()["tokens_read"] == with_context["tokens_read"]
    text = word_pieces("a bird ran to the door .")
    assert through_session(client, with_context["id"], text) == pytest.approx(through_session(client, read_first, text), abs=1e-5)


def test_forks_are_independent(client):
    base = start(client)
    through_session(client, base, ["the dog"])
    fork = client.post(f"/v1/sessions/{base}/fork").json()["id"]
    assert fork != base
    on_fork = through_session(client, fork, [" sat on the mat"])
    on_base = through_session(client, base, [" ran to the river"])
    assert on_fork == pytest.approx(whole(client, "the dog sat on the mat")[2:], abs=1e-5)
    assert on_base == pytest.approx(whole(client, "the dog ran to the river")[2:], abs=1e-5)


def test_score_without_advance_and_with_fork_leave_the_session_alone(client):
    session = start(client)
    peek = client.post(f"/v1/sessions/{session}/score", json={"text": "the cat", "advance": False}).json()
    assert peek["advanced"] is False and peek["id"] == session and peek["tokens_read"] == 1
    forked = client.post(f"/v1/sessions/{session}/score", json={"text": "the cat", "fork": True}).json()
    assert forked["id"] != session and forked["advanced"] and forked["tokens_read"] == 3
    assert client.get(f"/v1/sessions/{session}").json()["tokens_read"] == 1
    assert peek["token_logprobs"] == forked["token_logprobs"]


def test_next_agrees_with_scoring_and_batches_equal_single_calls(client):
    sessions = [start(client) for _ in range(3)]
    for session, prefix in zip(sessions, ["the cat", "a small child", "my friend walked"]):
        through_session(client, session, [prefix])
    candidates = [" sat", " looked", " zebra", " the river"]
    single = [client.post(f"/v1/sessions/{s}/next", json={"candidates": candidates, "top_k": 3}).json() for s in sessions]
    batch = client.post("/v1/sessions/batch/next", json={"items": [{"id": s, "candidates": candidates, "top_k": 3} for s in sessions]})
    assert batch.status_code == 200, batch.text
    for one, together, prefix in zip(single, batch.json()["results"], ["the cat", "a small child", "my friend walked"]):
        assert [c["logprob"] for c in together["candidates"]] == pytest.approx([c["logprob"] for c in one["candidates"]], abs=1e-5)
        assert [t["token"] for t in one["top"]] == [t["token"] for t in together["top"]] and len(one["top"]) == 3
        for candidate in one["candidates"]:
            expected = whole(client, prefix + candidate["text"])[len(prefix.split()):]
            assert candidate["token_logprobs"] == pytest.approx(expected, abs=1e-5)
        ended = whole(client, prefix, add_eos=True)[-1]
        assert one["end_logprob"] == pytest.approx(ended, abs=1e-5)


def test_the_batch_score_advances_many_sessions_as_single_calls_do(client):
    texts = ["the cat sat", "a bird", "the old man ran to"]
    sessions = [start(client) for _ in texts]
    response = client.post("/v1/sessions/batch/score", json={"items": [{"id": s, "text": t} for s, t in zip(sessions, texts)]})
    assert response.status_code == 200, response.text
    for result, text in zip(response.json()["results"], texts):
        assert result["token_logprobs"] == pytest.approx(whole(client, text), abs=1e-5)
    again = client.post("/v1/sessions/batch/score", json={"items": [{"id": s, "text": " ."} for s in sessions]}).json()
    for result, text in zip(again["results"], texts):
        assert result["token_logprobs"] == pytest.approx(whole(client, text + " .")[-1:], abs=1e-5)
    repeated = client.post("/v1/sessions/batch/score", json={"items": [{"id": sessions[0], "text": "a"}, {"id": sessions[0], "text": "b"}]})
    assert repeated.status_code == 422 and repeated.json()["error"]["param"] == "items.1.id"
    deleted = client.post("/v1/sessions/batch/delete", json={"ids": sessions + ["sess_unknown"]}).json()
    assert sorted(deleted["deleted"]) == sorted(sessions)


def test_generation_continues_the_state(client):
    session = start(client)
    through_session(client, session, ["the old man"])
    body = {"max_tokens": 8, "strategy": "argmax"}
    continued = client.post(f"/v1/sessions/{session}/generate", json=body)
    assert continued.status_code == 200, continued.text
    plain = client.post("/v1/generate", json={"prompt": "the old man"} | body).json()["choices"][0]
    assert continued.json()["tokens"] == plain["tokens"]
    assert continued.json()["advanced"] is False
    moved = client.post(f"/v1/sessions/{session}/generate", json=body | {"advance": True}).json()
    assert moved["advanced"] and moved["tokens_read"] == 4 + len(moved["tokens"])


def test_mistakes_are_clear_4xx(client, tiny_ngram_path, make_client):
    session = start(client)
    assert client.post("/v1/sessions/sess_nothing/score", json={"text": "a"}).status_code == 404
    assert client.post(f"/v1/sessions/{session}/score", json={"text": ""}).status_code == 422
    assert client.post(f"/v1/sessions/{session}/next", json={"top_k": 10_000}).json()["error"]["param"] == "top_k"
    assert client.post("/v1/sessions", json={"model": "no-such-model"}).status_code == 404
    assert client.delete(f"/v1/sessions/{session}").status_code == 200
    assert client.delete(f"/v1/sessions/{session}").status_code == 404
    assert client.post(f"/v1/sessions/{session}/next", json={}).status_code == 404


def test_an_ngram_model_is_refused(make_client, tiny_ngram_path, tiny_models_dir, tmp_path):
    directory = tmp_path / "models"
    shutil.copytree(tiny_models_dir, directory)
    shutil.copytree(tiny_ngram_path, directory / tiny_ngram_path.name)
    client = make_client(models_dir=directory)
    response = client.post("/v1/sessions", json={"model": tiny_ngram_path.name})
    assert response.status_code == 422 and "recurrent" in response.json()["error"]["message"]


def test_sessions_are_bound_to_their_key_and_limited_per_key(make_client):
    client = make_client(api_keys="key-one,key-two", max_sessions_per_key=2)
    one, two = {"Authorization": "Bearer key-one"}, {"Authorization": "Bearer key-two"}
    session = start(client, headers=one)
    assert client.get(f"/v1/sessions/{session}", headers=one).status_code == 200
    # Another key's session looks like no session at all.
    assert client.get(f"/v1/sessions/{session}", headers=two).status_code == 404
    assert client.post(f"/v1/sessions/{session}/score", json={"text": "a"}, headers=two).status_code == 404
    start(client, headers=one)
    refused = client.post("/v1/sessions", json={}, headers=one)
    assert refused.status_code == 429 and "limit" in refused.json()["error"]["message"]
    assert client.post(f"/v1/sessions/{session}/fork", headers=one).status_code == 429
    start(client, headers=two)  # the other key has its own room


def test_a_reload_that_changes_the_model_is_a_409(make_client, copy_of_models):
    client = make_client(models_dir=copy_of_models)
    session = start(client)
    config = copy_of_models / "tiny-word-lstm" / "model.safetensors"
    from safetensors.torch import load_file, save_file

    weights = load_file(config)
    name = next(iter(weights))
    weights[name] = weights[name] * 1.01
    save_file(weights, config)
    assert client.post("/v1/models/reload").status_code == 200
    response = client.post(f"/v1/sessions/{session}/score", json={"text": "the cat"})
    assert response.status_code == 409, response.text
    assert "reloaded" in response.json()["error"]["message"]
