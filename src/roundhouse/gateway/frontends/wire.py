"""Small pieces of the Streamable HTTP wire: JSON and SSE answers, JSON-RPC error bodies,
waiting for a client to go away. Shared by the frontend's POST, GET and DELETE handling."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import orjson
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Send

from roundhouse.protocol.jsonrpc import INVALID_REQUEST, Message

__all__ = [
    "JSON_HEADERS",
    "SSE_HEADERS",
    "accepted",
    "decode_header",
    "error",
    "event",
    "reply",
    "response_of",
    "wait_disconnect",
]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def decode_header(value: bytes) -> str | None:
    text = value.decode("latin-1")
    if text.startswith("=?base64?") and text.endswith("?="):
        payload = text[9:-2]
        try:
            decoded = base64.b64decode(payload, validate=True)
            # Only the canonical encoding matches, as in the SDK's decode_header_value.
            if base64.b64encode(decoded).decode("ascii") != payload:
                return None
            return decoded.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return text


def response_of(task: asyncio.Task[Message], request_id: Any) -> Message:
    if task.cancelled():
        return error(request_id, INVALID_REQUEST, "request cancelled")
    return task.result()


def error(request_id: Any, code: int, message: str, data: Any = None) -> Message:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


async def reply(
    send: Send, status: int, payload: Message | None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(payload) if payload is not None else b""
    headers = (
        [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if payload is not None
        else [(b"content-length", b"0")]
    )
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def accepted(send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


async def event(send: Send, message: Message) -> None:
    data = b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def wait_disconnect(receive: Receive) -> AsgiMessage:
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return event
