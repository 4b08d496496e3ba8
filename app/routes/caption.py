"""POST /v1/caption (multipart: the image plus form fields)."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile

from app.cache import cache_key, cached_if
from app.dependencies import CacheDep, EngineDep, SettingsDep, StoreDep
from app.engine.base import CaptionInput
from app.errors import ApiError
from app.images import decode_upload
from app.limits import RequestLimits
from app.schemas import CaptionResponse
from models.captioning.images import image_tensor
from models.registry import CAPTION
from models.sampling import MAX_TEMPERATURE, SEED_LIMIT, choice_params

router = APIRouter(tags=["caption"])
FORM_FIELDS = frozenset({"image", "model", "strategy", "beam_size", "max_tokens", "n", "seed", "temperature", "top_k",
                         "no_repeat_ngram_size"})
Strategy = Literal["beam", "argmax", "top_k", "multinomial"]


@router.post("/v1/caption", response_model=CaptionResponse)
async def caption(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    engine: EngineDep,
    cache: CacheDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF (first frame) or BMP")],
    model: Annotated[str | None, Form()] = None,
    strategy: Annotated[Strategy, Form()] = "beam",
    beam_size: Annotated[int, Form(ge=1)] = 3,
    max_tokens: Annotated[int, Form(ge=1)] = 20,
    n: Annotated[int, Form(ge=1)] = 1,
    seed: Annotated[int | None, Form(ge=0, lt=SEED_LIMIT)] = None,
    temperature: Annotated[float, Form(ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False)] = 1.0,
    top_k: Annotated[int | None, Form(ge=1)] = None,
    no_repeat_ngram_size: Annotated[int, Form(ge=0, le=8, description="beam: no caption repeats an n-gram this long (0: off)")] = 3,
):
    # Like the JSON endpoints, a misspelt field ("beamsize") is an error, not silently ignored.
    unknown = sorted(set((await request.form()).keys()) - FORM_FIELDS)
    if unknown:
        raise ApiError(422, f"unknown form field {unknown[0]!r}; the fields are {', '.join(sorted(FORM_FIELDS))}", unknown[0])
    RequestLimits.from_settings(settings).check_caption(strategy, n, beam_size, max_tokens)
    info = store.resolve(model, CAPTION)
    data = await image.read()
    picture = await asyncio.to_thread(decode_upload, data, settings.max_image_pixels)
    size = int(info.extra.get("image_size", 224))
    pixels = await asyncio.to_thread(image_tensor, picture, size)
    # Beam search is one search that returns its n best; the sampling strategies one draw per caption.
    params = choice_params(1 if strategy == "beam" else n, seed, strategy=strategy, temperature=temperature, top_k=top_k,
                           max_tokens=max_tokens, min_tokens=1, beam_size=beam_size)
    job = CaptionInput(info.model_id, pixels.numpy().tobytes(), size, n, params, no_repeat_ngram_size)

    async def compute() -> dict:
        captions = await engine.caption(job)
        return {"captions": [{"text": text, "logprob": round(logprob, 6), "score": round(score, 6), "finished": finished}
                             for text, logprob, score, finished in captions]}

    normalised = {"image_sha256": hashlib.sha256(data).hexdigest(), "strategy": strategy, "beam_size": beam_size,
                  "max_tokens": max_tokens, "n": n, "seed": seed, "temperature": temperature, "top_k": top_k,
                  "no_repeat_ngram_size": no_repeat_ngram_size}
    result, cached = await cached_if(cache, all(p.deterministic for p in params),
                                     cache_key(info.model_id, info.revision, "caption", normalised), compute)
    return CaptionResponse(model=info.model_id, cached=cached, **result)
