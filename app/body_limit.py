"""Request body size limit with the JSON error body: 413 before parsing when the declared
Content-Length is too large, and as soon as a streamed (chunked) body passes the limit.

Before answering, the rest of the body is read and thrown away (up to `DRAIN_LIMIT_BYTES`):
a server that closes the connection while the client is still sending makes the client's
TCP stack see a reset, and ordinary clients (urllib, requests) then report "Connection reset
by peer" instead of the 413 and its message."""
from __future__ import annotations

import json
from typing import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for_path: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for_path = limit_for_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for_path(scope.get("path", ""))
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await drain(receive, int(declared))
            await reject(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await drain(receive, DRAIN_LIMIT_BYTES)
                    # FastAPI re-raises HTTPException from body reading; the app's handler
                    # then answers with the error body.
                    raise HTTPException(413, f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


# The most a refused body is read for; beyond that the connection is closed mid-upload.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


async def drain(receive: Receive, declared: int) -> None:
    """Read and discard the rest of a refused body, up to DRAIN_LIMIT_BYTES."""
    if declared > DRAIN_LIMIT_BYTES:
        return
    drained = 0
    while drained <= DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def reject(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": {"type": "request_too_large", "message": f"request body exceeds {limit} bytes", "param": None}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
