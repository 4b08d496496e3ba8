"""GET / : the playground, one self-contained page (no CDN, works offline)."""
from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def playground() -> HTMLResponse:
    page = resources.files("app").joinpath("static/playground.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
