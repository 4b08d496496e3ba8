"""Bad input answers 4xx with the error body, never 5xx."""
import pytest


def assert_error(response, status, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "param"} and error["message"]
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"prompt": ""}, 422, "prompt"),
        ({}, 422, "prompt"),
        ({"prompt": "the cat", "max_tokens": 10**9}, 422, "max_tokens"),
        ({"prompt": "the cat", "max_tokens": -1}, 422, "max_tokens"),
        ({"prompt": "the cat", "model": "no-such-model"}, 404, "model"),
        ({"prompt": 42}, 422, "prompt"),
        ({"prompt": "the cat", "max_tokens": "ten"}, 422, "max_tokens"),
        ({"prompt": "the cat", "strategy": "beam"}, 422, "strategy"),
        ({"prompt": "the cat", "temperature": -0.5}, 422, "temperature"),
        ({"prompt": "the cat", "top_p": 0}, 422, "top_p"),
        ({"prompt": "the cat", "top_k": 0}, 422, "top_k"),
        ({"prompt": "the cat", "n": 10_000}, 422, "n"),
        ({"prompt": "the cat", "min_tokens": 50, "max_tokens": 5}, 422, "min_tokens"),
        ({"prompt": "the cat", "stop": [""]}, 422, "stop"),
        ({"prompt": "the cat", "unknown_field": 1}, 422, "unknown_field"),
        ({"prompt": "x" * 30_000}, 422, "prompt"),
    ],
)
def test_generate_rejects(client, body, status, param):
    assert_error(client.post("/v1/generate", json=body), status, param)


@pytest.mark.parametrize("size", [1_000_000, 2_000_000])
def test_megabyte_prompts_are_too_large(client, size):
    assert_error(client.post("/v1/generate", json={"prompt": "a" * size}), 413)


@pytest.mark.parametrize("field, value", [("seed", -5), ("top_k", -1), ("n", 0), ("min_tokens", -2), ("temperature", 1e308), ("seed", 2**70)])
def test_negative_and_huge_numbers(client, field, value):
    assert_error(client.post("/v1/generate", json={"prompt": "the cat", field: value}), 422, field)


def test_chunked_oversize_body_is_too_large(client):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"a" * 100_000
        yield b'"}'
    assert_error(client.post("/v1/generate", content=chunks(), headers={"content-type": "application/json"}), 413)


@pytest.mark.parametrize(
    "raw",
    [b'{"prompt": "\xff\xfe broken"}', b'{"prompt": ', b"not json", b'{"prompt": NaN}', b'{"prompt": "a", "temperature": Infinity}'],
)
def test_malformed_bodies(client, raw):
    response = client.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


@pytest.mark.parametrize(
    "body, status",
    [
        ({"texts": []}, 422),
        ({"tokens": []}, 422),
        ({}, 422),
        ({"texts": ["a"], "tokens": [["a"]]}, 422),
        ({"texts": "the cat"}, 422),
        ({"texts": [""], "add_eos": False}, 422),
        ({"tokens": [[]], "add_eos": False}, 422),
        ({"texts": ["the cat"] * 1000}, 422),
        ({"texts": ["the cat"], "model": "nope"}, 404),
    ],
)
def test_score_rejects(client, body, status):
    assert_error(client.post("/v1/score", json=body), status)


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing"), 404)
    assert client.get("/v1/generate").status_code == 405


def test_control_characters_and_non_ascii_are_accepted(client):
    response = client.post("/v1/score", json={"texts": ["the cat\x00\x07 sat \u202e東京 😀"]})
    assert response.status_code == 200
    assert any(response.json()["results"][0]["oov"])


def test_one_temperature_ceiling_on_every_endpoint(client):
    """/v1/generate and /v1/completions accept and refuse the same temperatures."""
    for temperature, status in ((50.0, 200), (150.0, 422)):
        generated = client.post("/v1/generate", json={"prompt": "the cat", "max_tokens": 2, "temperature": temperature})
        completed = client.post("/v1/completions", json={"model": "tiny-word-lstm", "prompt": "the cat", "max_tokens": 2,
                                                         "temperature": temperature})
        assert generated.status_code == completed.status_code == status, (generated.text, completed.text)


def test_every_text_a_model_reads_has_the_one_character_limit(make_client):
    """Prompts, texts to score and hypotheses to rescore are held to RNNSERVE_MAX_PROMPT_CHARS
    by the same check (app/limits.py)."""
    client = make_client(max_prompt_chars=20)
    long = "the cat sat on the mat ."  # 24 characters
    cases = [("/v1/generate", {"prompt": long}, "prompt"),
             ("/v1/score", {"texts": ["the cat", long]}, "texts.1"),
             ("/v1/rescore", {"utterances": [{"id": "u1", "hypotheses": [{"text": "the cat"}, {"text": long}]}]},
              "utterances.0.hypotheses.1.text")]
    for path, body, param in cases:
        response = client.post(path, json=body)
        assert response.status_code == 422 and response.json()["error"]["param"] == param, (path, response.text)
        assert "the limit is 20" in response.json()["error"]["message"]
