"""JSON-RPC 2.0 framing for MCP: messages are plain dicts, encoded with orjson, one per line.

Nothing here does I/O. A line that cannot be decoded becomes a ``DecodeError`` value rather than an
exception, so a reader can count it and carry on (the SDK's ``_parse_line`` does the same).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson

__all__ = [
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "MISSING_REQUIRED_CLIENT_CAPABILITY",
    "PARSE_ERROR",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "DecodeError",
    "Message",
    "RequestId",
    "decode",
    "encode",
    "encode_line",
    "is_notification",
    "is_request",
    "is_response",
    "make_error",
    "make_notification",
    "make_request",
    "make_result",
    "recover_id",
]

Message: TypeAlias = dict[str, Any]
RequestId: TypeAlias = int | str

# Standard JSON-RPC codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# MCP 2026-07-28 codes (mcp_types.jsonrpc).
HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A line or body that is not a JSON-RPC message; ``code`` is the wire code to answer with."""

    code: int
    reason: str


def encode(message: Message) -> bytes:
    """One message as compact JSON. orjson escapes control characters, so no raw newline appears."""
    return orjson.dumps(message)


def encode_line(message: Message) -> bytes:
    """One message framed for stdio: compact JSON followed by a single ``\\n``."""
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)


def decode(data: bytes | bytearray | memoryview | str) -> Message | list[Any] | DecodeError:
    """Parse one message. A JSON array (a batch) is returned as a list for the caller to judge."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return DecodeError(PARSE_ERROR, f"not JSON: {exc}")
    if isinstance(value, dict):
        if value.get("jsonrpc") != "2.0":
            return DecodeError(INVALID_REQUEST, 'missing "jsonrpc": "2.0"')
        return value
    if isinstance(value, list):
        return value
    return DecodeError(
        INVALID_REQUEST, f"a JSON-RPC message is an object, not {type(value).__name__}"
    )


def make_request(
    request_id: RequestId, method: str, params: dict[str, Any] | None = None
) -> Message:
    message: Message = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def make_notification(method: str, params: dict[str, Any] | None = None) -> Message:
    message: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def make_result(request_id: RequestId, result: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def make_error(request_id: RequestId | None, code: int, message: str, data: Any = None) -> Message:
    """An error answer; ``request_id`` is None only when the request's id could not be read."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def is_request(message: Message) -> bool:
    return "method" in message and "id" in message


def is_notification(message: Message) -> bool:
    return "method" in message and "id" not in message


def is_response(message: Message) -> bool:
    return "method" not in message and ("result" in message or "error" in message)


# An id value: an integer or a string without escapes (ours are integers).
_ID_VALUE = rb'(-?\d+|"[^"\\]*")'
_TAIL_ID = re.compile(rb'"id"\s*:\s*' + _ID_VALUE + rb'\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?}\s*$')
_KEY_ID = re.compile(rb'"id"\s*:\s*' + _ID_VALUE)


def recover_id(head: bytes, tail: bytes = b"") -> RequestId | None:
    """Best-effort top-level ``id`` of a message too large to parse, from its first and last bytes.

    The head is scanned with a small depth/string tracker so an ``"id"`` nested inside ``result``
    is never taken for the message's own; the tail is checked for an ``"id"`` closing the object
    (serializers that write the result first). Returns None when neither tells.
    """
    found = _top_level_id(head)
    if found is not None:
        return found
    match = _TAIL_ID.search(tail)
    return _id_value(match.group(1)) if match else None


def _top_level_id(head: bytes) -> RequestId | None:
    depth = 0
    in_string = False
    escaped = False
    for pos, byte in enumerate(head):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
            continue
        if byte == 0x22:
            if depth == 1:
                match = _KEY_ID.match(head, pos)
                if match:
                    return _id_value(match.group(1))
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return None


def _id_value(raw: bytes) -> RequestId:
    return raw[1:-1].decode("utf-8", "replace") if raw.startswith(b'"') else int(raw)
