"""The message side of a Streamable HTTP POST: its parse and checks, and the answers a
request gets without a call. Plain functions and small classes, compiled (the frontend calls
them on every request); ``http.py`` keeps the ASGI app that strings them together."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Send

from roundhouse.gateway.frontends.wire import error, reply
from roundhouse.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
)

__all__ = [
    "ACCEPTED",
    "MODERN_ERROR_STATUS",
    "Answer",
    "Reject",
    "accepts_both",
    "parse_message",
    "refuse",
]

#: HTTP status for a JSON-RPC error code on the 2026-07-28 path (mcp.shared.inbound).
MODERN_ERROR_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    -32021: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}


class Reject(Exception):
    """A request refused before any call: answered with this HTTP status and JSON-RPC error."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        data: Any = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.headers = headers


async def refuse(send: Send, rejection: Reject) -> None:
    await reply(
        send,
        rejection.status,
        error(None, rejection.code, rejection.message, rejection.data),
        rejection.headers,
    )


class Answer:
    """What a request is answered with at once, without a call: an initialize, a probe, a
    notification (202), a 2026-07-28 request refused with its id."""

    __slots__ = ("headers", "payload", "status")

    def __init__(
        self, status: int, payload: Message | None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.payload = payload
        self.headers = headers


#: 202 with no body: a notification or a client's response, taken.
ACCEPTED = Answer(202, None)


def accepts_both(accept: bytes) -> bool:
    """Whether an Accept header takes JSON and SSE, with the wildcards RFC 9110 allows, as
    the SDK's check_accept_headers reads them."""
    # find(), not ``in``: on bytes, ``in`` first tries its operand as an integer and raises
    # and clears a TypeError each time.
    find = accept.find
    return find(b"*/*") >= 0 or (
        (find(b"application/json") >= 0 or find(b"application/*") >= 0)
        and (find(b"text/event-stream") >= 0 or find(b"text/*") >= 0)
    )


def parse_message(body: bytes) -> Message:
    """A POST body as one JSON-RPC message, or the reason it is not one."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Reject(400, PARSE_ERROR, "Parse error: the body is not valid JSON") from None
    if isinstance(message, list):
        raise Reject(400, INVALID_REQUEST, "batch requests are not supported")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise Reject(400, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
    if "method" in message:
        if not isinstance(message["method"], str):
            raise Reject(400, INVALID_REQUEST, "Invalid Request: method must be a string")
        # A request id is a key of the session's calls and is echoed back as it came: an
        # object or array would not hash, and orjson reads an integer beyond 64 bits as a
        # float it could not echo exactly. bool is an int to Python, not to JSON-RPC.
        if "id" in message and type(message["id"]) not in (str, int):
            raise Reject(
                400, INVALID_REQUEST, "Invalid Request: id must be a string or a 64-bit integer"
            )
    elif "result" not in message and "error" not in message:
        raise Reject(400, INVALID_REQUEST, "Invalid Request: neither a request nor a response")
    return message
