"""The official openai client, unchanged, against a real uvicorn."""
import math
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import start_server


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def test_models_list(client):
    assert [model.id for model in client.models.list()] == ["tiny-word-lstm"]


def test_completion(client):
    completion = client.completions.create(model="tiny-word-lstm", prompt="the cat sat on", max_tokens=6, temperature=0)
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.text
    assert completion.usage.prompt_tokens == 4
    again = client.completions.create(model="tiny-word-lstm", prompt="the cat sat on", max_tokens=6, temperature=0)
    assert again.choices[0].text == choice.text


def test_seeded_sampling_with_n_and_stop(client):
    kwargs = dict(model="tiny-word-lstm", prompt="a bird", max_tokens=10, temperature=0.9, top_p=0.95, n=3, seed=5, stop=["."])
    first, second = client.completions.create(**kwargs), client.completions.create(**kwargs)
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len(first.choices) == 3 and all("." not in c.text for c in first.choices)


def test_streaming(client):
    stream = client.completions.create(model="tiny-word-lstm", prompt="the dog", max_tokens=8, temperature=0, stream=True)
    pieces, reasons = [], []
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.text)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    plain = client.completions.create(model="tiny-word-lstm", prompt="the dog", max_tokens=8, temperature=0)
    assert "".join(pieces) == plain.choices[0].text and reasons == [plain.choices[0].finish_reason]


def test_echo_with_zero_tokens_returns_prompt_logprobs(client):
    completion = client.completions.create(model="tiny-word-lstm", prompt=["the cat sat on the mat .", ". mat the on sat cat the"],
                                           max_tokens=0, echo=True, logprobs=0)
    good, bad = completion.choices
    assert good.text == "the cat sat on the mat ."
    assert good.logprobs.tokens == ["the", "cat", "sat", "on", "the", "mat", "."]
    assert all(lp <= 0 for lp in good.logprobs.token_logprobs)
    assert sum(good.logprobs.token_logprobs) > sum(bad.logprobs.token_logprobs)
    assert good.logprobs.text_offset[:3] == [0, 4, 8]


def test_generated_logprobs(client):
    completion = client.completions.create(model="tiny-word-lstm", prompt="the cat", max_tokens=3, temperature=0, logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs)
    for value, top in zip(logprobs.token_logprobs, logprobs.top_logprobs):
        assert math.isclose(value, max(top.values()), abs_tol=1e-4)  # argmax picks the top token


def test_errors_reach_the_client_as_openai_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="missing", prompt="x", max_tokens=1)
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model="tiny-word-lstm", prompt="x", max_tokens=10**7)


def test_a_client_that_gives_up_frees_its_slot(tmp_path, tiny_models_dir):
    """A plain (non-streaming) request whose client disconnects is cancelled in the engine."""
    server = start_server(tmp_path, tiny_models_dir, RNNSERVE_MAX_NEW_TOKENS="1000000")
    body = {"prompt": "the cat", "max_tokens": 1000000, "min_tokens": 1000000}  # minutes of work
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.base_url + "/v1/generate", json=body, timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            worker = httpx.get(server.base_url + "/readyz").json()["workers"][0]
            if worker["in_flight"] == 0 and worker["live_sequences"] == 0:
                break
            time.sleep(0.05)
        assert worker["in_flight"] == 0 and worker["live_sequences"] == 0
        # Aborted, not finished: a sequence that ran to its end would have counted its tokens.
        assert "rnnserve_tokens_generated_total{" not in httpx.get(server.base_url + "/metrics").text
    finally:
        server.stop()


def test_a_completion_joins_its_prompt(client):
    """Clients append the completion to the prompt (OpenAI semantics): the separator belongs to
    the completion, echo reads exactly prompt + completion, and streamed deltas, stop strings and
    text offsets (counted from the start of the prompt, echoed or not) agree with that text."""
    prompt = "the cat sat on"
    plain = client.completions.create(model="tiny-word-lstm", prompt=prompt, max_tokens=6, temperature=0, logprobs=0)
    text = plain.choices[0].text
    assert text.startswith(" ") and not text.startswith("  ")
    echoed = client.completions.create(model="tiny-word-lstm", prompt=prompt, max_tokens=6, temperature=0, echo=True, logprobs=0)
    assert echoed.choices[0].text == prompt + text
    offsets, tokens = echoed.choices[0].logprobs.text_offset, echoed.choices[0].logprobs.tokens
    assert all(echoed.choices[0].text[offset:].startswith(token) for offset, token in zip(offsets, tokens))
    plain_offsets = plain.choices[0].logprobs.text_offset
    assert all((prompt + text)[offset:].startswith(token) for offset, token in zip(plain_offsets, plain.choices[0].logprobs.tokens))
    assert plain_offsets == offsets[-len(plain_offsets):]
    streamed = "".join(c.text for chunk in client.completions.create(model="tiny-word-lstm", prompt=prompt, max_tokens=6,
                                                                      temperature=0, stream=True) for c in chunk.choices)
    assert streamed == text
    second_word = text.split()[1]
    stopped = client.completions.create(model="tiny-word-lstm", prompt=prompt, max_tokens=6, temperature=0, stop=[" " + second_word],
                                        logprobs=0)
    assert stopped.choices[0].text == " " + text.split()[0]
    assert stopped.choices[0].logprobs.tokens == [text.split()[0]]  # the stop string's token is dropped with its text


def test_echoed_prompt_logprobs_with_alternatives(client):
    """How ASR rescoring tools call it: echo, max_tokens 0, logprobs N. As in OpenAI, the first
    prompt token has no alternatives and every other one its N likeliest tokens."""
    completion = client.completions.create(model="tiny-word-lstm", prompt="the cat sat on the mat .", max_tokens=0, echo=True, logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert logprobs.top_logprobs[0] is None
    assert len(logprobs.top_logprobs) == len(logprobs.tokens) and all(len(top) == 2 for top in logprobs.top_logprobs[1:])
