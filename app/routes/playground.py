"""GET / : the playground, one self-contained page (no CDN, works offline), and GET
/favicon.ico, which browsers ask every site for."""
from __future__ import annotations

import functools
import io
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from PIL import Image, ImageDraw

router = APIRouter(include_in_schema=False)

ACCENT = (47, 111, 222)  # the playground's --accent


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    page = resources.files("app").joinpath("static/playground.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@functools.cache
def favicon_bytes() -> bytes:
    """A recurrence: a white loop with an arrow head on the playground's blue, drawn large and
    scaled down so its edges are smooth, in the sizes browsers pick from."""
    size = 256
    picture = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pen = ImageDraw.Draw(picture)
    pen.rounded_rectangle((0, 0, size - 1, size - 1), radius=56, fill=ACCENT)
    pen.arc((56, 56, 200, 200), start=40, end=320, fill="white", width=28)
    pen.polygon([(206, 63), (160, 101), (206, 110)], fill="white")  # at the end of the arc, pointing along it
    buffer = io.BytesIO()
    picture.save(buffer, format="ICO", sizes=[(16, 16), (32, 32), (48, 48)])
    return buffer.getvalue()


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(favicon_bytes(), media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})
