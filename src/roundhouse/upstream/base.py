"""The one small interface every upstream connection offers (stdio, Streamable HTTP, in-memory).

A connection carries JSON-RPC dicts to one server and back. It knows nothing about who started the
server or which client a message is for; ids it puts on the wire are its own integers, so many
client sessions can share one connection (``send_request_raw`` rewrites and restores their ids).

Failures, all ``UpstreamError``:

    UpstreamClosed          the stream ended (peer exit/EOF) or we closed the connection
    UpstreamTimeout         no answer within the wait's timeout (the message names the method)
    UpstreamProtocolError   the server sent something that is not MCP (e.g. a line over the cap)
    UpstreamRpcError        the server answered with a JSON-RPC error; its code/message/data kept
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

import orjson

from roundhouse.errors import InvalidInput, UpstreamError, UpstreamProtocolError
from roundhouse.protocol.jsonrpc import METHOD_NOT_FOUND, Message

__all__ = [
    "RELATED_KEY",
    "Connection",
    "MessageHandler",
    "UpstreamRpcError",
    "deliver_incoming",
    "encode_for_upstream",
    "result_of",
]

MessageHandler: TypeAlias = Callable[[Message], None]
"""Receives notifications and server-to-client requests; called on the reader, must not block."""


def deliver_incoming(
    message: Message, on_message: MessageHandler | None, name: str, log: logging.Logger
) -> Message | None:
    """A notification or server-to-client request from the server, handed to ``on_message``.

    Returns what the connection must send back itself when nobody here takes requests: a
    ``ping`` is answered, anything else refused, so the server never waits on us forever.
    """
    if on_message is not None:
        try:
            on_message(message)
        except Exception:
            log.exception("%s: on_message failed for %s", name, message.get("method"))
        return None
    if "id" not in message:
        return None
    if message["method"] == "ping":
        return {"jsonrpc": "2.0", "id": message["id"], "result": {}}
    return {
        "jsonrpc": "2.0",
        "id": message["id"],
        "error": {"code": METHOD_NOT_FOUND, "message": "client does not handle this"},
    }


#: Key a connection adds to a message the server sent in the middle of one request's answer (an
#: HTTP upstream's SSE stream for that POST): the id the caller gave that request. Not JSON-RPC:
#: whoever receives the message takes it off before passing the message on.
RELATED_KEY = "_related"


def encode_for_upstream(message: Message, *, newline: bool = False) -> bytes:
    """``message`` as bytes for the wire. orjson reads JSON nested up to 1,024 levels but writes
    only 254: a client's message between the two is refused here, as bad input, not a crash."""
    try:
        return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE if newline else 0)
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(f"the message cannot be forwarded: {exc}") from None


class UpstreamRpcError(UpstreamError):
    """The upstream answered a request with a JSON-RPC error.

    ``code``, ``message`` and ``data`` are the upstream's own, so a transparent frontend can pass
    the error on unchanged; ``method`` says which of our requests it answered.
    """

    def __init__(self, code: int, message: str, *, data: Any = None, method: str = "") -> None:
        super().__init__(message, data=data)
        self.code = code
        self.method = method

    def __str__(self) -> str:
        where = f" to {self.method}" if self.method else ""
        return f"upstream error {self.code}{where}: {self.message}"


@runtime_checkable
class Connection(Protocol):
    """A live JSON-RPC conversation with one MCP server."""

    @property
    def closed(self) -> bool: ...

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float
    ) -> dict[str, Any]:
        """Send a request and return its ``result``; a JSON-RPC error raises UpstreamRpcError."""
        ...

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None: ...

    async def send_request_raw(
        self, message: Message, timeout: float, headers: dict[str, str] | None = None
    ) -> Message:
        """Forward a client's request verbatim under one of our ids; the answer carries its id.
        (``timeout`` may be given by position: the gateway's hot path does, a keyword costs a
        compiled caller a dict per call.)"""
        ...

    async def send(self, message: Message) -> None:
        """Write a message that expects no answer (a notification, or our answer to the server)."""
        ...

    async def aclose(self) -> None: ...


def result_of(response: Message, method: str) -> dict[str, Any]:
    """The ``result`` of a response message, or the error it carries raised as UpstreamRpcError."""
    error = response.get("error")
    if error is not None:
        if isinstance(error, dict):
            code = error.get("code")
            return_code = code if isinstance(code, int) else -32603
            raise UpstreamRpcError(
                return_code, str(error.get("message", "")), data=error.get("data"), method=method
            )
        raise UpstreamProtocolError(f"malformed error answer to {method}: {error!r}")
    result = response.get("result")
    if not isinstance(result, dict):
        raise UpstreamProtocolError(f"answer to {method} has no result object")
    return result
