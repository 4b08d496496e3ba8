"""/v1/completions logprobs and stop strings in the details OpenAI's legacy completions API
defines: text offsets counted from the start of the prompt, the echoed prompt's alternatives,
and tokens that agree with the text a stop string cuts."""
import math

PROMPT = "the cat sat on"


def complete(client, **body):
    response = client.post("/v1/completions", json={"model": "tiny-word-lstm", "prompt": PROMPT, "temperature": 0} | body)
    assert response.status_code == 200, response.text
    return response.json()["choices"]


def test_text_offsets_count_from_the_start_of_the_prompt_without_echo(client):
    """OpenAI: with echo false the first completion token's text_offset is len(prompt) (its
    text begins there, after the separator for a word model)."""
    choice = complete(client, max_tokens=5, logprobs=0)[0]
    logprobs, text = choice["logprobs"], choice["text"]
    assert logprobs["text_offset"][0] == len(PROMPT) + len(text) - len(text.lstrip())
    assert all((PROMPT + text)[offset:].startswith(token) for offset, token in zip(logprobs["text_offset"], logprobs["tokens"]))
    echoed = complete(client, max_tokens=5, logprobs=0, echo=True)[0]["logprobs"]
    assert echoed["text_offset"][-len(logprobs["tokens"]):] == logprobs["text_offset"]


def test_echoed_prompt_tokens_have_their_alternatives(client):
    """echo + max_tokens 0 + logprobs N, as ASR rescoring tools call it: the first prompt token
    has null alternatives (OpenAI), every other prompt token its N likeliest tokens."""
    choice = complete(client, max_tokens=0, logprobs=2, echo=True)[0]
    logprobs = choice["logprobs"]
    assert choice["text"] == PROMPT and logprobs["tokens"] == ["the", "cat", "sat", "on"]
    assert logprobs["top_logprobs"][0] is None
    for token, value, top in zip(logprobs["tokens"][1:], logprobs["token_logprobs"][1:], logprobs["top_logprobs"][1:]):
        assert len(top) == 2 and all(alternative <= 0 for alternative in top.values())
        assert value <= max(top.values()) + 1e-6
        if token in top:  # the same distribution as the token's own log-probability
            assert math.isclose(top[token], value, abs_tol=1e-5)
    assert logprobs["token_logprobs"] == complete(client, max_tokens=0, logprobs=0, echo=True)[0]["logprobs"]["token_logprobs"]


def test_echo_with_generated_tokens_gives_alternatives_throughout(client):
    choice = complete(client, max_tokens=3, logprobs=1, echo=True)[0]
    tops = choice["logprobs"]["top_logprobs"]
    assert len(tops) == len(choice["logprobs"]["tokens"]) == 4 + 3
    assert tops[0] is None and all(len(top) == 1 for top in tops[1:])


def test_a_stop_string_drops_its_tokens_from_generate_and_logprobs(client):
    """The text is cut before the stop string (OpenAI), and the tokens reported are the ones
    that text holds."""
    body = {"prompt": PROMPT, "max_tokens": 6, "strategy": "argmax"}
    full = client.post("/v1/generate", json=body).json()["choices"][0]
    stop = " " + full["tokens"][1]
    assert full["text"].startswith(" " + full["tokens"][0] + stop)
    stopped = client.post("/v1/generate", json=body | {"stop": stop}).json()
    choice = stopped["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["text"] == " " + full["tokens"][0]
    assert choice["tokens"] == full["tokens"][:1]
    assert stopped["usage"]["completion_tokens"] == 1
    completion = complete(client, max_tokens=6, logprobs=1, stop=[stop])[0]
    assert completion["text"] == choice["text"] and completion["logprobs"]["tokens"] == choice["tokens"]
    assert len(completion["logprobs"]["token_logprobs"]) == len(completion["logprobs"]["text_offset"]) == 1
