"""The sampling parameters' limits through the API, for every shipped model type: a temperature
or top_p that underflows float32 is the argmax answer (never a crashed worker, a 5xx or an
index outside the vocabulary), and cut-off captions are not dressed as sentences."""
import io

import pytest
from PIL import Image

from tests.api.conftest import open_client
from tests.conftest import SHIPPED_MODELS

PROMPTS = {"wikitext2-lstm": "The game was released in", "shakespeare-char-lstm": "ROMEO:"}
EDGES = [{"temperature": 1e-300}, {"temperature": 1e-38}, {"temperature": 5e-324}, {"top_p": 1e-60},
         {"top_p": 5e-324, "temperature": 100.0}]


@pytest.fixture(scope="module")
def shipped_client():
    client = open_client(SHIPPED_MODELS)
    yield client
    client.__exit__(None, None, None)


def restarts(client) -> float:
    text = client.get("/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("rnnserve_worker_restarts_total"))


@pytest.mark.parametrize("model", sorted(PROMPTS))
def test_vanishing_temperature_and_top_p_give_the_argmax_text(shipped_client, model):
    before = restarts(shipped_client)
    request = {"model": model, "prompt": PROMPTS[model], "max_tokens": 20}
    argmax = shipped_client.post("/v1/generate", json={**request, "strategy": "argmax"})
    assert argmax.status_code == 200, argmax.text
    for edge in EDGES:
        for strategy in ("multinomial", "top_k"):
            response = shipped_client.post("/v1/generate", json={**request, **edge, "strategy": strategy, "seed": 1})
            assert response.status_code == 200, (edge, strategy, response.text)
            if "temperature" in edge and edge["temperature"] < 1e-30 or "top_p" in edge:
                assert response.json()["choices"][0]["text"] == argmax.json()["choices"][0]["text"], (edge, strategy)
    completion = shipped_client.post("/v1/completions", json={"model": model, "prompt": PROMPTS[model], "max_tokens": 20,
                                                              "temperature": 1e-300, "seed": 1})
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["text"] == argmax.json()["choices"][0]["text"]
    assert restarts(shipped_client) == before


def photo() -> bytes:
    image = Image.new("RGB", (96, 96), (40, 120, 200))
    for x in range(30, 66):
        for y in range(20, 80):
            image.putpixel((x, y), (200, 60, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def caption(client, **fields):
    return client.post("/v1/caption", files={"image": ("image.png", photo(), "image/png")},
                       data={key: str(value) for key, value in fields.items()})


def test_captions_sampled_at_vanishing_temperature_are_the_argmax_caption(shipped_client):
    before = restarts(shipped_client)
    argmax = caption(shipped_client, strategy="argmax")
    assert argmax.status_code == 200, argmax.text
    for strategy in ("multinomial", "top_k"):
        for temperature in ("1e-300", "1e-38"):
            response = caption(shipped_client, strategy=strategy, temperature=temperature, seed=1)
            assert response.status_code == 200, response.text
            assert response.json()["captions"][0]["text"] == argmax.json()["captions"][0]["text"]
    assert restarts(shipped_client) == before


def test_only_finished_captions_end_with_a_full_stop(shipped_client):
    cut = caption(shipped_client, strategy="argmax", max_tokens=2).json()["captions"][0]
    assert cut["finished"] is False and not cut["text"].endswith("."), cut
    whole = caption(shipped_client, strategy="argmax").json()["captions"][0]
    assert whole["finished"] is True and whole["text"].endswith("."), whole
