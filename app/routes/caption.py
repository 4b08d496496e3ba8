"""POST /v1/caption (multipart: the image plus form fields)."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, Form

from app.cache import cache_key, cached_if
from app.dependencies import CacheDep, EngineDep, RequestIdDep, SettingsDep, StoreDep
from app.engine.base import CaptionInput
from app.images import decode_upload
from app.limits import RequestLimits
from app.schemas import CaptionRequest, CaptionResponse
from models.captioning.images import image_tensor
from models.registry import CAPTION

router = APIRouter(tags=["caption"])


@router.post("/v1/caption", response_model=CaptionResponse)
async def caption(form: Annotated[CaptionRequest, Form(media_type="multipart/form-data")], settings: SettingsDep,
                  store: StoreDep, engine: EngineDep, cache: CacheDep, request_id: RequestIdDep):
    RequestLimits.from_settings(settings).check_caption(form.n, form.beam_size, form.max_tokens)
    info = store.resolve(form.model, CAPTION)
    data = await form.image.read()
    picture = await asyncio.to_thread(decode_upload, data, settings.max_image_pixels)
    size = int(info.extra.get("image_size", 224))
    pixels = await asyncio.to_thread(image_tensor, picture, size)
    params = form.to_sampling_params()
    job = CaptionInput(info.model_id, pixels.numpy().tobytes(), size, form.n, params, form.no_repeat_ngram_size)

    async def compute() -> dict:
        captions = await engine.submit(CAPTION, job, request_id=request_id)
        return {"captions": [{"text": text, "logprob": round(logprob, 6), "score": round(score, 6), "finished": finished}
                             for text, logprob, score, finished in captions]}

    normalised = form.model_dump(exclude={"image", "model"}) | {"image_sha256": hashlib.sha256(data).hexdigest()}
    result, cached = await cached_if(cache, all(p.deterministic for p in params),
                                     cache_key(info.model_id, info.revision, "caption", normalised), compute)
    return CaptionResponse(model=info.model_id, cached=cached, **result)
