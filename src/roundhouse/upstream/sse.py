"""A JSON-RPC connection to a legacy HTTP+SSE MCP server (the 2024-11-05 transport).

The client opens one long-lived GET on the server's SSE URL. The server's first event,
``endpoint``, names where to POST messages: a URL relative to the SSE URL, which must stay on
its origin (a server may not send our messages, and the credentials in our headers, anywhere
else: another origin is refused). Each message we send is its own POST, acknowledged with 202;
every answer, notification and server-to-client request arrives on the one stream. So:

- answers are matched to requests by id, as over stdio: the ids on the wire are ours, and an
  answer to no pending request is counted (``stats.unmatched_responses``) and dropped;
- a server-to-client request carries no clue of the call that caused it (there is no
  per-request stream to tag it with ``RELATED_KEY``): the relay treats it as it treats stdio's;
- the stream's end is the connection's end. Every pending call fails at once with
  UpstreamClosed, later calls fail at once, and ``wait_closed()`` tells the owner (the
  supervisor restarts the instance through its backoff). A 404 to a POST (the server forgot our
  session) ends the connection the same way.

Hostile streams cost bounded memory and never hang a caller: an event over ``max_event_bytes``
is dropped by the decoder (``protocol/sse.py``) and only the request it answered fails; data
that is not JSON-RPC is counted and dropped; a stream that never names its endpoint is bounded
by ``connect``'s timeout; POST acknowledgements are read up to a few KiB, no more.

Lifecycle: ``await conn.connect(timeout=...)`` opens the stream and waits for the endpoint; the
reader is a task the connection owns; ``aclose()`` ends it (closing the GET ends the server's
session: the transport has no DELETE). The ``httpx.AsyncClient`` belongs to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from roundhouse.errors import UpstreamClosed, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from roundhouse.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    Message,
    recover_id,
)
from roundhouse.protocol.sse import OversizeEvent, SseDecoder, SseEvent
from roundhouse.upstream.base import (
    MessageHandler,
    UpstreamRpcError,
    deliver_incoming,
    encode_for_upstream,
    result_of,
)
from roundhouse.upstream.http import mapped_errors

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "REFUSED_POST_STATUSES",
    "NotAnEventStream",
    "SseConnection",
    "SseStats",
    "post_refused",
    "resolve_endpoint",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
NOTIFY_TIMEOUT: Final = 10.0
#: The GET may stay silent for as long as nothing happens; health checks find a dead peer.
STREAM_TIMEOUT: Final = httpx.Timeout(10.0, read=None)
#: How much of a POST's acknowledgement ("Accepted") is read; the rest is not waited for.
MAX_ACK_BYTES: Final = 64 * 1024
MAX_ENDPOINT_CHARS: Final = 4096
# Requests the protocol forbids cancelling.
_UNCANCELLABLE: Final = frozenset({"initialize", "server/discover"})


class NotAnEventStream(UpstreamProtocolError):
    """The GET did not open an event stream (an error status or another content type): the
    server does not speak HTTP+SSE at that URL. ``data["status"]`` is the HTTP status."""


@dataclass(slots=True)
class SseStats:
    garbage_events: int = 0  # data that is not a JSON-RPC object; dropped
    oversize_events: int = 0  # over max_event_bytes; dropped (its request failed if identified)
    unmatched_responses: int = 0  # answers to no pending request (late, or never asked)
    ignored_events: int = 0  # events of another type, and endpoint events after the first
    requests_sent: int = 0
    messages_received: int = 0


class _Pending:
    __slots__ = ("client_id", "future", "method")

    def __init__(self, method: str, future: asyncio.Future[Message], client_id: Any) -> None:
        self.method = method
        self.future = future
        self.client_id = client_id  # the id to restore on the answer (raw path), else _OURS


_OURS: Final = object()


#: Statuses of a Streamable HTTP POST that mean "try HTTP+SSE at this URL" (the MCP
#: specification's backwards compatibility section).
REFUSED_POST_STATUSES: Final = frozenset({400, 404, 405})


def post_refused(status: int | None) -> bool:
    """Whether a Streamable HTTP POST was refused in a way that may mean an HTTP+SSE server."""
    return status in REFUSED_POST_STATUSES


def resolve_endpoint(stream_url: str, value: str) -> str:
    """The POST URL an ``endpoint`` event names, resolved against the SSE URL; ValueError when
    it is not a URL or lies on another origin (scheme, host or port)."""
    value = value.strip()
    if not value or len(value) > MAX_ENDPOINT_CHARS or any(c in value for c in "\r\n\x00 "):
        raise ValueError("the endpoint event does not hold a URL")
    base = httpx.URL(stream_url)
    try:
        target = base.join(value)
    except httpx.InvalidURL:
        raise ValueError("the endpoint event does not hold a URL") from None
    if _origin(target) != _origin(base):
        scheme, host, port = _origin(target)
        raise ValueError(f"the endpoint event points to another origin ({scheme}://{host}:{port})")
    return str(target)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port if url.port is not None else default


class SseConnection:
    """HTTP+SSE transport; implements ``upstream.base.Connection``."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        headers: Mapping[str, str] | None = None,
        on_message: MessageHandler | None = None,
        name: str = "sse",
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.url = url
        self.name = name
        #: The URL messages are POSTed to, once the server named it.
        self.endpoint: str | None = None
        self.stats = SseStats()
        self._client = client
        self._headers = dict(headers or {})
        self._on_message = on_message
        self._max_event_bytes = max_event_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._closed_reason: str | None = None
        self._closed = asyncio.Event()
        self._endpoint_ready: asyncio.Future[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._connecting = False

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> SseConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self, *, timeout: float) -> None:
        """Open the event stream and wait for its ``endpoint`` event. May be called once.

        Raises NotAnEventStream (no event stream at the URL), UpstreamProtocolError (an endpoint
        that is not a URL on the same origin), UpstreamTimeout (no endpoint within ``timeout``),
        UpstreamClosed (the stream ended first, or the server could not be reached).
        """
        if self._connecting:
            raise RuntimeError("SseConnection.connect() may be called once")
        self._connecting = True
        self._endpoint_ready = ready = asyncio.get_running_loop().create_future()
        # Its error is read even when no one waits any more (connect gave up first).
        ready.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            async with asyncio.timeout(timeout):
                await self._open_stream(timeout)
                self.endpoint = await self._endpoint_ready
        except TimeoutError:
            await self.aclose()
            raise UpstreamTimeout(
                f"{self.name}: the event stream named no endpoint within {timeout:g} s",
                data={"method": "endpoint", "timeout": timeout},
            ) from None
        except BaseException:
            await self.aclose()
            raise

    async def _open_stream(self, timeout: float) -> None:
        headers = {
            **self._headers,
            "accept": "text/event-stream",
            "cache-control": "no-store",
            # Compressed events could inflate far past the cap before the decoder sees them.
            "accept-encoding": "identity",
        }
        request = self._client.build_request(
            "GET", self.url, headers=headers, timeout=STREAM_TIMEOUT
        )
        with mapped_errors(self.name, "the event stream (GET)", timeout):
            response = await self._client.send(request, stream=True)
        status = response.status_code
        content_type = response.headers.get("content-type", "").lower()
        if status != 200 or not content_type.startswith("text/event-stream"):
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
            what = f"HTTP {status}" if status != 200 else f"content type {content_type!r}"
            raise NotAnEventStream(
                f"{self.name}: the GET did not open an event stream ({what})",
                data={"status": status},
            )
        self._reader = asyncio.create_task(self._read(response), name=f"{self.name} events")

    async def wait_closed(self) -> str:
        """Wait until the connection ends, however it ends; why it ended."""
        await self._closed.wait()
        return self._closed_reason or f"{self.name}: closed"

    def abort(self, reason: str) -> None:
        """Fail every pending request with UpstreamClosed(reason) now; later calls fail at once."""
        self._shut(reason)

    async def aclose(self) -> None:
        """Fail pending requests, end the stream and every POST still on its way."""
        self._shut(f"{self.name}: the connection was closed by Roundhouse")
        tasks: list[asyncio.Future[None]] = [*self._background]
        reader, self._reader = self._reader, None
        if reader is not None:
            tasks.append(reader)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("%s: a task failed", self.name)

    def _shut(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._closed.set()
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(
                    UpstreamClosed(f"{reason} (while awaiting {entry.method})")
                )
        ready = self._endpoint_ready
        if ready is not None and not ready.done():
            ready.set_exception(UpstreamClosed(f"{reason} (before naming its endpoint)"))

    # -- sending ---------------------------------------------------------------------------------

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float
    ) -> dict[str, Any]:
        message: Message = {"jsonrpc": "2.0", "id": 0, "method": method}
        if params is not None:
            message["params"] = params
        return result_of(await self._roundtrip(message, method, _OURS, timeout), method)

    async def send_request_raw(
        self, message: Message, timeout: float, headers: dict[str, str] | None = None
    ) -> Message:
        """Forward a request under our own id; the answer (result or error) gets its id back.
        (``headers`` are the 2026-07-28 era's; this transport predates them.)"""
        method = message.get("method")
        return await self._roundtrip(
            dict(message), method if isinstance(method, str) else "?", message.get("id"), timeout
        )

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def send(self, message: Message) -> None:
        """POST a message that expects no answer (a notification, our answer to the server)."""
        method = str(message.get("method", "response"))
        self._check_open(method)
        body = encode_for_upstream(message)
        with mapped_errors(self.name, method, NOTIFY_TIMEOUT):
            async with asyncio.timeout(NOTIFY_TIMEOUT):
                await self._post(body, method)

    async def _roundtrip(
        self, message: Message, method: str, client_id: Any, timeout: float
    ) -> Message:
        self._check_open(method)
        request_id = next(self._ids)
        message["id"] = request_id
        body = encode_for_upstream(message)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(method, future, client_id)
        # The answer comes on the stream, maybe before the POST returns: wait on the answer,
        # and let a failed POST fail it.
        post = self._spawn(self._post(body, method))
        post.add_done_callback(functools.partial(self._posted, request_id))
        self.stats.requests_sent += 1
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            post.cancel()
            self._cancel_upstream(request_id, method, "timed out")
            raise UpstreamTimeout(
                f"{self.name}: no answer to {method} within {timeout:g} s",
                data={"method": method, "timeout": timeout},
            ) from None
        except asyncio.CancelledError:
            post.cancel()
            self._cancel_upstream(request_id, method, "cancelled by the caller")
            raise
        finally:
            self._pending.pop(request_id, None)

    def _posted(self, request_id: int, post: asyncio.Future[None]) -> None:
        error = None if post.cancelled() else post.exception()
        entry = self._pending.get(request_id)
        if error is not None and entry is not None and not entry.future.done():
            entry.future.set_exception(error)

    async def _post(self, body: bytes, method: str) -> None:
        endpoint = self.endpoint
        if endpoint is None:
            raise UpstreamClosed(
                f"{self.name}: the server named no endpoint (cannot send {method})"
            )
        headers = {**self._headers, "content-type": "application/json"}
        request = self._client.build_request("POST", endpoint, content=body, headers=headers)
        with mapped_errors(self.name, method, NOTIFY_TIMEOUT):
            response = await self._client.send(request, stream=True)
            try:
                status = response.status_code
                # Read a short acknowledgement whole, so its connection can be reused; a
                # longer one is not waited for.
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > MAX_ACK_BYTES:
                        break
            finally:
                await response.aclose()
        if status == 404:
            reason = f"{self.name}: the server no longer knows this connection (404 to {method})"
            self._shut(reason)
            raise UpstreamClosed(reason, data={"status": 404})
        if not 200 <= status < 300:
            # A redirect is refused too: following it could carry the message off the origin.
            code = INTERNAL_ERROR if status >= 500 else INVALID_REQUEST
            raise UpstreamRpcError(code, f"HTTP {status}", data={"status": status}, method=method)

    def _cancel_upstream(self, request_id: int, method: str, reason: str) -> None:
        """Tell the server we stopped waiting (best effort, in the background)."""
        if method in _UNCANCELLABLE or self._closed_reason is not None:
            return
        note: Message = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        self._spawn(self._quietly(self.send(note)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @staticmethod
    async def _quietly(work: Coroutine[Any, Any, None]) -> None:
        with contextlib.suppress(UpstreamError):
            await work

    def _check_open(self, method: str) -> None:
        if self._closed_reason is not None:
            raise UpstreamClosed(f"{self._closed_reason} (cannot send {method})")
        if self.endpoint is None and self._endpoint_ready is None:
            raise UpstreamClosed(f"{self.name}: not connected (cannot send {method})")

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self, response: httpx.Response) -> None:
        decoder = SseDecoder(self._max_event_bytes)
        reason = f"{self.name}: the server ended the event stream"
        try:
            async for chunk in response.aiter_raw():
                for event in decoder.feed(chunk):
                    if isinstance(event, OversizeEvent):
                        self._oversize(event)
                    else:
                        self._event(event)
        except httpx.HTTPError as exc:
            reason = f"{self.name}: the event stream broke ({type(exc).__name__})"
        except UpstreamProtocolError as exc:
            reason = exc.message
        except asyncio.CancelledError:
            reason = f"{self.name}: the event stream's reader was stopped"
            raise
        finally:
            self._shut(reason)
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()

    def _event(self, event: SseEvent) -> None:
        if event.event == "endpoint":
            self._endpoint_event(event.data)
            return
        if event.event != "message":
            self.stats.ignored_events += 1
            return
        try:
            value = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self.stats.garbage_events += 1
            logger.debug(
                "%s: dropped an event that is not JSON (%d bytes)", self.name, len(event.data)
            )
            return
        if isinstance(value, dict):
            self._dispatch(value)
        elif isinstance(value, list):  # a batch (2024-11-05 allowed them)
            for item in value:
                if isinstance(item, dict):
                    self._dispatch(item)
                else:
                    self.stats.garbage_events += 1
        else:
            self.stats.garbage_events += 1

    def _endpoint_event(self, data: bytes) -> None:
        ready = self._endpoint_ready
        if ready is None or ready.done():
            self.stats.ignored_events += 1  # the endpoint is named once, at the start
            return
        try:
            endpoint = resolve_endpoint(self.url, data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            error = UpstreamProtocolError(f"{self.name}: {exc}; refused")
            ready.set_exception(error)
            raise error from None
        ready.set_result(endpoint)

    def _dispatch(self, message: Message) -> None:
        self.stats.messages_received += 1
        if "method" in message:
            self._incoming(message)
            return
        request_id = message.get("id")
        entry = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if entry is None:
            self.stats.unmatched_responses += 1
            logger.debug(
                "%s: dropped an answer to no pending request (id %r)", self.name, request_id
            )
            return
        if entry.future.done():
            return
        if entry.client_id is not _OURS:
            message["id"] = entry.client_id
        entry.future.set_result(message)

    def _incoming(self, message: Message) -> None:
        """A notification or a server-to-client request."""
        answer = deliver_incoming(message, self._on_message, self.name, logger)
        if answer is not None:
            self._spawn(self._quietly(self.send(answer)))

    def _oversize(self, event: OversizeEvent) -> None:
        self.stats.oversize_events += 1
        request_id = recover_id(event.head)
        entry = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        logger.warning(
            "%s: dropped an event over %d bytes (id %r)",
            self.name,
            self._max_event_bytes,
            request_id,
        )
        if entry is not None and not entry.future.done():
            entry.future.set_exception(
                UpstreamProtocolError(
                    f"{self.name}: the answer to {entry.method} exceeds the "
                    f"{self._max_event_bytes}-byte event cap",
                    data={"method": entry.method, "max_event_bytes": self._max_event_bytes},
                )
            )
