import pytest


@pytest.mark.parametrize("strategy", ["argmax", "top_k", "multinomial"])
def test_every_strategy_generates(client, strategy):
    response = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 8, "strategy": strategy, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-word-lstm" and body["id"] == response.headers["x-request-id"]
    choice = body["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 < len(choice["tokens"]) <= 8 or choice["finish_reason"] == "stop"
    assert "<unk>" not in choice["tokens"]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": len(choice["tokens"])}


def test_argmax_continues_the_grammar(client):
    body = client.post("/v1/generate", json={"prompt": "the cat sat on", "max_tokens": 5, "strategy": "argmax"}).json()
    assert body["choices"][0]["tokens"][0] in {"the", "a"}


def test_seeded_requests_are_reproducible_and_cached(client):
    request = {"prompt": "a bird", "max_tokens": 10, "strategy": "multinomial", "seed": 123, "n": 3}
    first = client.post("/v1/generate", json=request).json()
    second = client.post("/v1/generate", json=request).json()
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in second["choices"]]
    assert first["cached"] is False and second["cached"] is True
    assert len(first["choices"]) == 3


def test_unseeded_sampling_is_never_cached(client):
    request = {"prompt": "a bird", "max_tokens": 4, "strategy": "multinomial"}
    assert client.post("/v1/generate", json=request).json()["cached"] is False
    assert client.post("/v1/generate", json=request).json()["cached"] is False


def test_min_tokens_and_stop(client):
    body = client.post("/v1/generate", json={"prompt": "the dog", "max_tokens": 30, "strategy": "argmax", "min_tokens": 12}).json()
    assert len(body["choices"][0]["tokens"]) >= 12
    stopped = client.post("/v1/generate", json={"prompt": "the dog", "max_tokens": 30, "strategy": "argmax", "min_tokens": 12, "stop": "."}).json()
    assert stopped["choices"][0]["finish_reason"] == "stop" and "." not in stopped["choices"][0]["text"]


def test_end_of_sentence_finishes_with_stop(client):
    body = client.post("/v1/generate", json={"prompt": "the dog ran to", "max_tokens": 40, "strategy": "argmax"}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["text"].endswith(".")
