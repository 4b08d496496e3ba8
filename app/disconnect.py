"""Cancel a request's handler when its client goes away.

Starlette stops a *streaming* response on disconnect, but a plain request handler runs on to
the end, holding an engine slot for an answer nobody will read. This middleware is the only
reader of the connection: it hands messages to the app through a queue and, on
`http.disconnect` before the response is complete, cancels the handler (the engine then
aborts the sequence, freeing its slot at the next step).
"""
from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CancelOnDisconnectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: asyncio.Queue[Message] = asyncio.Queue()
        response_complete = False
        disconnected = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response_complete = True
            await send(message)

        handler = asyncio.create_task(self.app(scope, messages.get, tracking_send))

        async def read_connection() -> None:
            nonlocal disconnected
            while True:
                message = await receive()
                await messages.put(message)
                if message["type"] == "http.disconnect":
                    if not response_complete:
                        disconnected = True
                        handler.cancel()
                    return

        reader = asyncio.create_task(read_connection())
        try:
            await handler
        except asyncio.CancelledError:
            if not disconnected:
                raise  # the server itself is cancelling us
        finally:
            reader.cancel()
