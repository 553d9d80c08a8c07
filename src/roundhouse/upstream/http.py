"""A JSON-RPC connection to a Streamable HTTP MCP server: one POST per message.

Each request is its own POST with ``Accept: application/json, text/event-stream``; the answer is
either a JSON body or an SSE stream, in which the message with our id is the answer and everything
before it (progress, logging, server-to-client requests) goes to ``on_message``.

Headers follow the message's era, read off the message itself, so forwarded client requests are
addressed correctly without extra state:

- modern (``params._meta`` carries a 2026-07-28 protocol version): ``MCP-Protocol-Version`` from
  that ``_meta``, ``Mcp-Method`` always, ``Mcp-Name`` for tools/call, prompts/get, resources/read;
- legacy: ``Mcp-Session-Id`` and ``MCP-Protocol-Version`` learned from the ``initialize`` answer.

The ``httpx.AsyncClient`` belongs to the caller (one pooled client serves many connections); this
class never closes it. ``aclose()`` ends a legacy session with a DELETE, best effort and bounded.
httpx errors become Upstream* errors in one place, ``mapped_errors`` (the HTTP+SSE connection
in ``sse.py`` uses it too). Not here yet: the legacy GET stream for unsolicited messages, and SSE
resumption (``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

import httpx
import orjson

from roundhouse.errors import UpstreamClosed, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from roundhouse.protocol.eras import (
    INITIALIZE_METHOD,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    MCP_SESSION_ID_HEADER,
    MODERN_VERSIONS,
    NAME_BEARING_METHODS,
    PROTOCOL_VERSION_META_KEY,
    encode_header_value,
)
from roundhouse.protocol.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, Message
from roundhouse.upstream.base import (
    RELATED_KEY,
    MessageHandler,
    UpstreamRpcError,
    encode_for_upstream,
    result_of,
)

__all__ = ["SESSION_DELETE_TIMEOUT", "HttpConnection", "UpstreamSessionExpired", "mapped_errors"]

logger = logging.getLogger(__name__)

SESSION_DELETE_TIMEOUT: Final = 2.0
NOTIFY_TIMEOUT: Final = 10.0
_ACCEPT: Final = "application/json, text/event-stream"


class UpstreamSessionExpired(UpstreamClosed):
    """The server no longer knows our ``Mcp-Session-Id`` (HTTP 404): initialize again."""


class HttpConnection:
    """Streamable HTTP transport; implements ``upstream.base.Connection``."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        headers: Mapping[str, str] | None = None,
        on_message: MessageHandler | None = None,
        name: str = "http",
    ) -> None:
        self.url = url
        self.name = name
        self._client = client
        self._headers = {**(headers or {}), "accept": _ACCEPT, "content-type": "application/json"}
        self._on_message = on_message
        self._ids = itertools.count(1)
        self.session_id: str | None = None
        self.protocol_version: str | None = None  # legacy, from the initialize answer
        #: The last HTTP status that refused a message outright (no JSON-RPC answer in the
        #: body): 400, 404 or 405 to the handshake may mean an HTTP+SSE server (``sse.py``).
        self.refused_status: int | None = None
        self._closed = False
        self._in_flight = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_count(self) -> int:
        return self._in_flight

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the legacy session (DELETE, bounded, errors ignored); later calls fail at once."""
        if self._closed:
            return
        self._closed = True
        if self.session_id is None:
            return
        headers = self._base_headers()
        with contextlib.suppress(httpx.HTTPError, TimeoutError):
            async with asyncio.timeout(SESSION_DELETE_TIMEOUT):
                await self._client.delete(self.url, headers=headers)
        self.session_id = None

    # -- sending ---------------------------------------------------------------------------------

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float
    ) -> dict[str, Any]:
        message: Message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            message["params"] = params
        return result_of(await self._exchange(message, method, timeout), method)

    async def send_request_raw(
        self, message: Message, timeout: float, headers: dict[str, str] | None = None
    ) -> Message:
        """Forward a request under our own id; the answer (result or error) gets its id back.
        ``headers`` go with it (the ``Mcp-Param-*`` headers a modern upstream checks)."""
        method = message.get("method")
        outgoing = {**message, "id": next(self._ids)}
        name = method if isinstance(method, str) else "?"
        answer = await self._exchange(outgoing, name, timeout, headers, message.get("id"))
        answer["id"] = message.get("id")
        return answer

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def send(self, message: Message) -> None:
        """POST a message that expects no answer; the server acknowledges with 202."""
        method = str(message.get("method", "response"))
        self._check_open(method)
        with mapped_errors(self.name, method, NOTIFY_TIMEOUT):
            async with asyncio.timeout(NOTIFY_TIMEOUT):
                response = await self._client.post(
                    self.url,
                    content=encode_for_upstream(message),
                    headers=self._headers_for(message),
                )
        if response.status_code >= 400:
            sent_session = MCP_SESSION_ID_HEADER in response.request.headers
            self._raise_for_status(response.status_code, method, sent_session)

    async def _exchange(
        self,
        message: Message,
        method: str,
        timeout: float,
        extra_headers: dict[str, str] | None = None,
        related: Any = None,
    ) -> Message:
        self._check_open(method)
        request_id = message["id"]
        self._in_flight += 1
        try:
            with mapped_errors(self.name, method, timeout):
                async with asyncio.timeout(timeout):
                    return await self._post(message, method, request_id, extra_headers, related)
        finally:
            self._in_flight -= 1

    async def _post(
        self,
        message: Message,
        method: str,
        request_id: Any,
        extra_headers: dict[str, str] | None = None,
        related: Any = None,
    ) -> Message:
        body = encode_for_upstream(message)
        headers = self._headers_for(message)
        if extra_headers:
            headers = {**headers, **extra_headers}
        request = self._client.build_request("POST", self.url, content=body, headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            status = response.status_code
            content_type = response.headers.get("content-type", "").lower()
            if status >= 400:
                sent_session = MCP_SESSION_ID_HEADER in request.headers
                if content_type.startswith("application/json"):
                    answer = _as_message(await response.aread())
                    # A 404 to a session request means the session is gone, unless the body
                    # says the method is unknown (modern servers answer that with 404 too).
                    expired = status == 404 and sent_session
                    if answer is not None and _is_error(answer, expired):
                        answer["id"] = request_id
                        return answer
                self._raise_for_status(status, method, sent_session)
            if method == INITIALIZE_METHOD:
                session_id = response.headers.get(MCP_SESSION_ID_HEADER)
                if session_id:
                    self.session_id = session_id
            if content_type.startswith("application/json"):
                answer = _as_message(await response.aread())
                if answer is None or answer.get("id") != request_id:
                    raise UpstreamProtocolError(
                        f"{self.name}: the answer to {method} is not its response"
                    )
            elif content_type.startswith("text/event-stream"):
                answer = await self._from_sse(response, method, request_id, related)
            else:
                raise UpstreamProtocolError(
                    f"{self.name}: unexpected content type {content_type!r} answering {method}"
                )
        finally:
            await response.aclose()
        if method == INITIALIZE_METHOD:
            result = answer.get("result")
            if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
                self.protocol_version = result["protocolVersion"]
        return answer

    async def _from_sse(
        self, response: httpx.Response, method: str, request_id: Any, related: Any = None
    ) -> Message:
        async for data in _sse_data(response.aiter_lines()):
            message = _as_message(data.encode())
            if message is None:
                continue
            if "method" not in message and message.get("id") == request_id:
                return message
            if self._on_message is not None:
                if related is not None:
                    message = {**message, RELATED_KEY: related}
                try:
                    self._on_message(message)
                except Exception:
                    logger.exception("%s: on_message failed", self.name)
        raise UpstreamClosed(f"{self.name}: the event stream ended before the answer to {method}")

    # -- headers and status ----------------------------------------------------------------------

    def _base_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self.session_id is not None:
            headers[MCP_SESSION_ID_HEADER] = self.session_id
        if self.protocol_version is not None:
            headers[MCP_PROTOCOL_VERSION_HEADER] = self.protocol_version
        return headers

    def _headers_for(self, message: Message) -> dict[str, str]:
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        if version not in MODERN_VERSIONS:
            return self._base_headers()
        headers = dict(self._headers)
        headers[MCP_PROTOCOL_VERSION_HEADER] = version
        method = message.get("method")
        if isinstance(method, str):
            headers[MCP_METHOD_HEADER] = method
            key = NAME_BEARING_METHODS.get(method)
            if key is not None and isinstance(params, dict) and isinstance(params.get(key), str):
                headers[MCP_NAME_HEADER] = encode_header_value(params[key])
        return headers

    def _raise_for_status(self, status: int, method: str, sent_session: bool) -> None:
        self.refused_status = status
        if status == 404 and sent_session:
            self.session_id = None
            raise UpstreamSessionExpired(
                f"{self.name}: the server ended our session (404 to {method})", data={"status": 404}
            )
        # As the SDK's transport does: an HTTP-level rejection reads as a JSON-RPC error, so the
        # era probe can fall back on it.
        code = (
            METHOD_NOT_FOUND
            if status == 404
            else INVALID_REQUEST
            if status < 500
            else INTERNAL_ERROR
        )
        raise UpstreamRpcError(code, f"HTTP {status}", data={"status": status}, method=method)

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise UpstreamClosed(
                f"{self.name}: the connection was closed by Roundhouse (cannot send {method})"
            )


@contextlib.contextmanager
def mapped_errors(name: str, method: str, timeout: float) -> Iterator[None]:
    """The one place httpx errors (and our deadline) become Upstream* errors."""
    try:
        yield
    except UpstreamError:
        raise
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise UpstreamTimeout(
            f"{name}: no answer to {method} within {timeout:g} s",
            data={"method": method, "timeout": timeout},
        ) from exc
    except httpx.TransportError as exc:
        raise UpstreamClosed(f"{name}: the connection failed during {method}: {exc!r}") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{name}: HTTP error during {method}: {exc!r}") from exc


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (fields other than data are not needed here)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _is_error(answer: Message, session_expired: bool) -> bool:
    error = answer.get("error")
    if not isinstance(error, dict):
        return False
    return not session_expired or error.get("code") == METHOD_NOT_FOUND


def _as_message(body: bytes) -> Message | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
