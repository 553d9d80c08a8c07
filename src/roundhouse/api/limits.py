"""Request body cap for the HTTP server: 413 before the body is read into memory."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roundhouse.errors import RoundhouseError

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(RoundhouseError):
    """Raised from ``receive`` when a chunked body grows past the cap; the error boundary
    answers 413 (the app may already be inside its handlers when it happens)."""

    code = -32600
    http_status = 413


class BodyLimit:
    """Pure ASGI middleware: refuses bodies over ``max_bytes`` by Content-Length or by count."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    await _reject(send, 400, "invalid Content-Length")
                    return
                if too_big:
                    await _reject(send, 413, f"request body over {self.max_bytes} bytes")
                    return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(f"request body over {self.max_bytes} bytes")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, 413, f"request body over {self.max_bytes} bytes")


async def _reject(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": {"code": -32600, "message": message, "field": None}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
