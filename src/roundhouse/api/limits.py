"""Request body cap for the HTTP server: 413 before more than the cap is read into memory."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


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
                # The server enforces the declared length; nothing more can arrive.
                await self.app(scope, receive, send)
                return
        # No length declared (chunked): read the body here, up to the cap, and hand it on in
        # one piece. Counting inside the app is not enough: a body parser that turns every
        # error into its own 400 (FastAPI's) would hide the 413.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await _reject(send, 413, f"request body over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: only http.disconnect is left
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


async def _reject(send: Send, status: int, message: str) -> None:
    # No "Connection: close": uvicorn then drains the rest of the body (for at most its
    # keep-alive timeout) before the connection is reused or closed, so a client that sends
    # its whole body before reading still gets the 413 instead of a connection reset.
    body = orjson.dumps({"error": {"code": -32600, "message": message, "field": None}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
