"""Server-Sent Events: the wire format and a response that reports a failure in-band once the
stream has begun (the status line is already sent by then)."""
from __future__ import annotations

import json
import logging
from contextlib import aclosing
from typing import Any, AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from app.engine.base import EngineError
from models.sampling import InvalidParameter

logger = logging.getLogger(__name__)
DONE = "data: [DONE]\n\n"


def sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def open_stream(stream: AsyncIterator[Any]) -> tuple[Any, AsyncIterator[Any]]:
    """Take the first event before the response starts, so a bad request still gets its
    proper status code instead of a 200 stream holding an error."""
    try:
        first = await anext(stream)
    except BaseException:
        await stream.aclose()
        raise
    return first, stream


def event_stream(first: Any, stream: AsyncIterator[Any], render: Callable[[Any], AsyncIterator[str]]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async with aclosing(stream):  # a disconnecting client closes the engine stream: its slot is freed
            async def events():
                yield first
                async for event in stream:
                    yield event

            try:
                async for chunk in render(events()):
                    yield chunk
            except (EngineError, InvalidParameter) as error:
                yield sse({"error": {"type": error.__class__.__name__, "message": str(error), "param": None}})
        yield DONE

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
