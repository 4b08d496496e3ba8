"""POST /v1/caption with real image bytes of every accepted kind, and every kind of bad upload."""
import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import open_client
from tests.training.shapes import draw


@pytest.fixture(scope="module")
def caption_client(all_models_dir):
    client = open_client(all_models_dir, max_image_bytes=2_000_000)
    yield client
    client.__exit__(None, None, None)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def red_circle(size: int = 48) -> Image.Image:
    return draw("circle", "red", random.Random(5), size)


def post(client, data: bytes, name: str = "image.png", content_type: str = "image/png", **fields):
    return client.post("/v1/caption", files={"image": (name, data, content_type)}, data={k: str(v) for k, v in fields.items()})


@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp"), ("GIF", "image/gif")])
def test_captions_every_format(caption_client, fmt, content_type):
    response = post(caption_client, encoded(red_circle(), fmt), f"x.{fmt.lower()}", content_type)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "shapes-captioner"
    (caption,) = body["captions"]
    assert caption["text"].endswith(".") and caption["logprob"] < 0
    assert "circle" in caption["text"].lower() or "red" in caption["text"].lower()


def test_n_best_beam_and_caching(caption_client):
    data = encoded(draw("square", "blue", random.Random(1), 48), "PNG")
    first = post(caption_client, data, strategy="beam", beam_size=4, n=3).json()
    assert len(first["captions"]) == 3 and first["cached"] is False
    logprobs = [c["logprob"] for c in first["captions"]]
    assert len({c["text"] for c in first["captions"]}) == 3
    again = post(caption_client, data, strategy="beam", beam_size=4, n=3).json()
    assert again["cached"] is True and again["captions"] == first["captions"]
    assert logprobs  # best first by length-normalised score


@pytest.mark.parametrize("strategy", ["argmax", "top_k", "multinomial"])
def test_sampling_strategies(caption_client, strategy):
    data = encoded(draw("triangle", "green", random.Random(2), 48), "PNG")
    n = 1 if strategy == "argmax" else 2  # argmax has one answer
    body = post(caption_client, data, strategy=strategy, n=n, seed=4).json()
    assert len(body["captions"]) == n and all(c["text"] for c in body["captions"])
    assert post(caption_client, data, strategy=strategy, n=n, seed=4).json()["captions"] == body["captions"]


def test_large_photo_is_resized(caption_client):
    big = red_circle(48).resize((1600, 1200))
    assert post(caption_client, encoded(big, "JPEG", quality=90), "photo.jpg", "image/jpeg").status_code == 200


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header announcing width×height pixels (a few hundred bytes on disk)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, name, status",
    [
        (b"", "empty.png", 422),
        (b"this is plain text, not a picture", "photo.jpg", 415),
        (b"%PDF-1.4 not an image", "doc.pdf", 415),
        (None, "truncated.jpg", 422),
        (png_bomb(30000, 30000), "bomb.png", 413),
    ],
    ids=["zero-bytes", "text-named-jpg", "pdf", "truncated-jpeg", "png-bomb"],
)
def test_bad_uploads(caption_client, data, name, status):
    if data is None:
        data = encoded(red_circle(200), "JPEG")[:400]
    response = post(caption_client, data, name, "image/jpeg")
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == "image"


def test_oversize_body_is_413(caption_client):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8))
    data = encoded(noise, "PNG")
    assert len(data) > 2_000_000
    response = post(caption_client, data)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(
    "fields, param",
    [({"strategy": "nucleus"}, "strategy"), ({"beam_size": 0}, "beam_size"), ({"max_tokens": 1000}, "max_tokens"),
     ({"n": 5, "beam_size": 2}, "n"), ({"seed": -3}, "seed"), ({"model": "tiny-word-lstm"}, "model")],
)
def test_bad_fields(caption_client, fields, param):
    response = post(caption_client, encoded(red_circle(), "PNG"), **fields)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param


def test_missing_image_field(caption_client):
    response = caption_client.post("/v1/caption", data={"strategy": "beam"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "image"


def test_models_lists_the_captioner(caption_client):
    cards = {card["id"]: card for card in caption_client.get("/v1/models").json()["data"]}
    assert cards["shapes-captioner"]["type"] == "captioner" and cards["shapes-captioner"]["default"] is True
    assert "dev_cider" in cards["shapes-captioner"]["metrics"]


def test_captions_carry_the_score_they_are_ranked_by(caption_client):
    for strategy, fields in (("beam", {"beam_size": 4, "n": 3}), ("multinomial", {"n": 4, "seed": 2})):
        captions = post(caption_client, encoded(red_circle(), "PNG"), strategy=strategy, **fields).json()["captions"]
        order = [(not c["finished"], -c["score"]) for c in captions]
        assert order == sorted(order), strategy  # finished first, each group by score
        for caption in captions:
            length = len(caption["text"].rstrip(".").split()) + caption["finished"]  # the words, and the end token
            assert caption["score"] == pytest.approx(caption["logprob"] / length ** 0.7, abs=1e-4)


def test_n_is_defined_per_strategy(caption_client):
    response = post(caption_client, encoded(red_circle(), "PNG"), strategy="argmax", n=2)
    assert response.status_code == 422 and response.json()["error"]["param"] == "n"
    assert post(caption_client, encoded(red_circle(), "PNG"), strategy="argmax", n=1).status_code == 200


def test_a_misspelt_form_field_is_rejected(caption_client):
    response = post(caption_client, encoded(red_circle(), "PNG"), beamsize=3)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "beamsize" and "beam_size" in response.json()["error"]["message"]


def test_repeated_ngram_blocking_is_a_parameter(caption_client):
    for size in (0, 2, 3):
        response = post(caption_client, encoded(red_circle(), "PNG"), no_repeat_ngram_size=size)
        assert response.status_code == 200
    assert post(caption_client, encoded(red_circle(), "PNG"), no_repeat_ngram_size=99).status_code == 422


def test_caption_limits_come_from_the_settings(make_client, all_models_dir):
    client = make_client(models_dir=all_models_dir, max_beam_size=4, max_caption_tokens=10)
    data = encoded(red_circle(), "PNG")
    assert post(client, data, strategy="beam", beam_size=4, max_tokens=10).status_code == 200
    for field, value in (("beam_size", 5), ("max_tokens", 11)):
        response = post(client, data, strategy="beam", **{field: value})
        assert response.status_code == 422 and response.json()["error"]["param"] == field, response.text


@pytest.mark.parametrize(
    "fields, param",
    [({"strategy": "top_k", "beam_size": 4}, "beam_size"), ({"strategy": "multinomial", "no_repeat_ngram_size": 2}, "no_repeat_ngram_size"),
     ({"strategy": "beam", "temperature": 0.5}, "temperature"), ({"strategy": "beam", "top_k": 5}, "top_k"),
     ({"strategy": "argmax", "top_k": 5}, "top_k"), ({"strategy": "argmax", "temperature": 0.5}, "temperature"),
     ({"strategy": "multinomial", "temperature": 0, "n": 2}, "n")],
)
def test_a_parameter_the_strategy_does_not_use_is_refused(caption_client, fields, param):
    response = post(caption_client, encoded(red_circle(), "PNG"), **fields)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param and param in response.json()["error"]["message"]


def test_a_caption_form_field_holding_a_lone_surrogate_is_refused(caption_client):
    """Starlette decodes form fields in the charset the request declares; in `unicode_escape`
    a field can carry a lone surrogate, which is refused like one in a JSON body."""
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nshapes\\ud800\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode() + encoded(red_circle(), "PNG") + f"\r\n--{boundary}--\r\n".encode()
    response = caption_client.post("/v1/caption", content=body,
                                   headers={"content-type": f"multipart/form-data; boundary={boundary}; charset=unicode_escape"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "model" and "lone surrogate" in response.json()["error"]["message"]
