"""A pooled HTTP/1.1 client for a JSON backend, with timeouts and size caps both ways.

Hand-written on asyncio rather than ``httpx.AsyncClient``: the backend it serves (Bindery's REST
API on 127.0.0.1) answers a GET in ~0.4 ms, and httpx spent 1.3 to 1.8 ms of CPU per request
on it (~2,300 Python calls per GET), which made this client the limit of the whole Bindery
chain. This one is a keep-alive ``asyncio.Protocol`` per connection (TCP_NODELAY on) with
``httptools.HttpResponseParser`` parsing the answer in C (~125 Python calls per GET, event loop
included): the same sequential GETs cost 130 to 220 µs of CPU each, where a bare asyncio
write-and-wait costs ~110 µs on the same machine (docs/PERFORMANCE.md, "Bindery's backend
client"). Only ``http://``: the backend is local, and a URL that needs TLS is refused when the
client is made.

The pool, from the resilience value objects: at most ``Limits.max_connections`` connections
(open, opening or idle), ``Limits.max_keepalive`` of them kept idle for reuse (an idle one is
dropped after ``KEEPALIVE_EXPIRY`` s, under uvicorn's 5 s), each wait bounded by its own
``Timeouts`` phase: ``pool`` (no free connection), ``connect``, ``write`` (while the socket
buffer is full), ``read`` (between two arrivals of bytes, as httpx counted it). A connection that
errored, timed out, was cut off, was cancelled mid-exchange, or was told ``Connection: close`` is
closed, never reused.

A kept-alive connection the backend closed while it sat idle is usually seen closed before it is
picked (the loop has delivered the EOF) and skipped. In the narrow race where it closes as the
request goes out, the request is sent again once on a fresh connection only if the connection was
reused, not one byte of the answer had arrived, and the method is idempotent (GET, HEAD, OPTIONS,
PUT, DELETE); a POST or PATCH caught that way is ``BackendUnavailable``, the caller's Guard
decides (the rule of Go's net/http).

Size caps are enforced where they cost nothing: a request over ``max_request_bytes`` (path and
query plus body) is refused before anything is sent, and the answer is read as it arrives, so a
body over ``max_response_bytes`` (declared in ``Content-Length`` or not) is cut off after the cap,
the connection closed, and never held in memory whole. A response head over ``MAX_HEAD_BYTES``
is refused too. Bodies are asked for, and accepted, without content encoding: a compressed
answer could expand past any cap in one step. Redirects are answers like any other status.

The client lives in ``upstream/`` because it does I/O; ``resilience/`` stays pure. Failures
become Roundhouse errors in one place, ``_mapped``:

    BackendUnavailable (UpstreamError)      refused, reset, closed early, not HTTP at all
    BackendTimeout (UpstreamTimeout)        a connect/read/write/pool wait ran out (says which)
    RequestTooLarge (InvalidInput)          our body over the cap: nothing was sent
    ResponseTooLarge (UpstreamProtocolError) the answer over the cap

The first two count as breaker failures; the size errors do not (the backend is fine, this one
exchange is not).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote, urlencode, urlsplit

import httptools
import orjson

from roundhouse.errors import (
    InvalidInput,
    UpstreamClosed,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from roundhouse.resilience.timeouts import Limits, Timeouts

__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "PooledHttpClient",
    "PooledResponse",
    "RequestTooLarge",
    "ResponseTooLarge",
]

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
KEEPALIVE_EXPIRY: Final = 4.0
MAX_HEAD_BYTES: Final = 64 << 10
_DEFAULT_HEADERS: Final = {"accept": "application/json", "accept-encoding": "identity"}
_DETAIL_CHARS: Final = 200  # a hostile peer's bytes in an error message stay short
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_PATH: Final = re.compile(r"[!-~]*")  # printable ASCII, no space: sent as it is
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~%?"
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class BackendUnavailable(UpstreamError):
    """The backend could not be reached, or broke the exchange off (refused, reset, garbage)."""

    http_status = 503


class BackendTimeout(UpstreamTimeout):
    """A wait on the backend ran out; ``phase`` says which (connect, read, write, pool)."""

    def __init__(self, message: str, *, phase: str, timeout: float) -> None:
        super().__init__(message, data={"phase": phase, "timeout": timeout})
        self.phase = phase
        self.timeout = timeout


class RequestTooLarge(InvalidInput):
    """The request is over ``max_request_bytes``; it was not sent."""

    http_status = 413


class ResponseTooLarge(UpstreamProtocolError):
    """The answer is over ``max_response_bytes``; the rest was not read."""

    counts_as_failure = False


class RemoteProtocolError(Exception):
    """The backend's bytes are not a valid HTTP/1.1 answer, or stopped before one was whole."""


class _WaitExpired(Exception):
    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


class _ClosedUnanswered(RemoteProtocolError):
    """Closed before one byte of the answer: on a reused connection, maybe only stale."""


@dataclass(frozen=True, slots=True)
class PooledResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            kind = self.headers.get("content-type", "no content type")
            raise UpstreamProtocolError(
                f"the backend's answer (HTTP {self.status}, {kind[:_DETAIL_CHARS]}, "
                f"{len(self.body)} bytes) is not JSON: {exc}"
            ) from exc


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection; httptools calls the ``on_*`` methods as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self.loop = loop
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._seconds = 0.0
        self._phase = ""
        self._parser: httptools.HttpResponseParser | None = None
        self.begin(head_only=False)
        self._parser = None  # idle until a request begins

    def begin(self, *, head_only: bool) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.received = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.too_large = ""
        self.encoding = ""
        self.status = 0
        self.has_length = False
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.complete or self.error is not None:
            # Bytes nobody asked for: the connection cannot be trusted again.
            self._fail(RemoteProtocolError("the backend sent bytes outside an answer"))
            return
        self.received += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = RemoteProtocolError(f"not a valid HTTP answer: {exc}")
        if not self.head_done and self.received > MAX_HEAD_BYTES:
            self.error = RemoteProtocolError(f"the answer's head is over {MAX_HEAD_BYTES} bytes")
        if self.complete or self.error is not None or self.too_large:
            self._wake()
        elif self._waiter is not None:
            # Bytes arrived: the read bound counts from here, without waking the caller (an
            # answer often comes in two segments, head then body; one wake-up is enough).
            self._deadline = self.loop.time() + self._seconds

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # --- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.head_done = True
        self.status = self._parser.get_status_code()
        declared = self.headers.get("content-length", "")
        self.has_length = bool(declared) or "transfer-encoding" in self.headers
        if declared.isdigit() and int(declared) > self.max_body and not self.head_only:
            self.too_large = f"declares {declared} bytes"
        self.encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if self.head_only:
            # The parser cannot know a HEAD answer has no body: take the head, drop the line.
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.too_large or self.head_only:
            return
        self.body += body
        if len(self.body) > self.max_body:
            self.too_large = f"sent more than {self.max_body} bytes"

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self.keep_alive = self._parser.should_keep_alive() and not self.head_only
        self.complete = True

    # --- used by the client --------------------------------------------------------------------

    async def wait(self, phase: str, seconds: float) -> None:
        """Until something happens on the connection, at most ``seconds``.

        One timer per connection, moved lazily: most waits end long before it fires, so a wait
        only sets the deadline, and the timer re-arms itself when it finds the deadline moved.
        """
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._phase = phase
        self._seconds = seconds
        self._deadline = deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check_deadline)
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.loop.time() >= self._deadline:
            waiter.set_exception(_WaitExpired(self._phase))
        else:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self.complete and self.error is None:
            if self.received == 0:
                self.error = _ClosedUnanswered(
                    "the backend closed the connection without answering"
                    + (f" ({type(exc).__name__})" if exc else "")
                )
            elif self.head_done and not self.has_length and not self.too_large:
                self.complete = True  # a body that ends with the connection
            else:
                self.error = RemoteProtocolError("the backend closed the connection mid-answer")
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None], phase: str) -> None:
    if not waiter.done():
        waiter.set_exception(_WaitExpired(phase))


class PooledHttpClient:
    """HTTP/1.1 keep-alive pool with Limits(max_connections, max_keepalive), Timeouts, size caps
    both ways. One per backend, shared by every caller; close it (``async with``) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen: one shared default is safe
        limits: Limits = Limits(),  # noqa: B008
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            url = urlsplit(base_url)
            host, port = url.hostname, url.port or 80
        except ValueError as exc:
            raise InvalidInput(f"not a usable backend URL: {exc}", field="base_url") from exc
        if url.scheme == "https":
            raise InvalidInput(
                "the backend URL must be http://: this client speaks no TLS (the backend is local)",
                field="base_url",
            )
        if url.scheme != "http" or not host:
            raise InvalidInput("the backend URL must be http:// with a host", field="base_url")
        self.timeouts = timeouts
        self.limits = limits
        self._host, self._port = host, port
        hostport = url.netloc.rsplit("@", 1)[-1]
        # Where errors say they went: the origin only, never credentials or a query.
        self.origin = f"http://{hostport}"
        self._prefix = url.path.rstrip("/")
        merged = {"host": hostport, **_DEFAULT_HEADERS}
        if url.username is not None or url.password is not None:
            pair = f"{unquote(url.username or '')}:{unquote(url.password or '')}"
            merged["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        for name, value in (headers or {}).items():
            if not _TOKEN.fullmatch(name) or _CONTROL.search(value):
                raise InvalidInput(f"not a usable header: {name[:40]!r}", field="headers")
            merged[name.lower()] = value
        self._head_tail = "".join(f"{name}: {value}\r\n" for name, value in merged.items())
        self._idle: deque[_Connection] = deque()
        # Slots are the right to use a connection. A caller takes an idle connection before it
        # opens one, so busy slots plus idle connections never exceed max_connections.
        self._free = limits.max_connections
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def __aenter__(self) -> PooledHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> PooledResponse:
        """One exchange. The answer is returned whatever its status: the caller decides what a
        404 means. Raises the errors in the module docstring."""
        if self._closed:
            raise UpstreamClosed(f"{method} {path}: the client was closed by Roundhouse")
        data = self._build(method, path, json, params)
        try:
            await self._take_slot()
            try:
                conn = self._idle_connection() or await self._open()
                try:
                    return await self._exchange(conn, method, path, data)
                except _ClosedUnanswered:
                    if not (conn.reused and method in IDEMPOTENT):
                        raise
                # The backend had closed a kept-alive connection: once more, on a fresh one.
                return await self._exchange(await self._open(), method, path, data)
            finally:
                self._give_slot()
        except (_WaitExpired, RemoteProtocolError, OSError) as exc:
            raise self._mapped(exc, method, path) from exc

    def _build(self, method: str, path: str, json: Any, params: Mapping[str, Any] | None) -> bytes:
        if method not in METHODS:
            raise InvalidInput(f"not an HTTP method this client sends: {method[:20]!r}")
        # An absolute URL here would send the request (and our headers) to another host.
        if not path.startswith("/"):
            raise InvalidInput(f"the path must start with '/': {path[:_DETAIL_CHARS]!r}")
        if _PLAIN_PATH.fullmatch(path) is None:
            if _CONTROL.search(path):
                raise InvalidInput(
                    f"{method} {path[:_DETAIL_CHARS]!r}: non-printable character in the path"
                )
            path = quote(path, safe=_PATH_SAFE)
        target = self._prefix + path
        if params:
            _check_params(params)
            target += ("&" if "?" in target else "?") + urlencode(_pairs(params))
        body = b""
        if json is not None:
            try:
                body = orjson.dumps(json)
            except TypeError as exc:
                raise InvalidInput(f"{method} {path}: the body is not JSON: {exc}") from exc
        size = len(target) + len(body)
        if size > self.limits.max_request_bytes:
            raise RequestTooLarge(
                f"{method} {path[:_DETAIL_CHARS]}: the request is {size} bytes, over the "
                f"limit of {self.limits.max_request_bytes}; it was not sent",
                data={"size": size, "limit": self.limits.max_request_bytes},
            )
        head = f"{method} {target} HTTP/1.1\r\n{self._head_tail}"
        if json is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "content-length: 0\r\n\r\n"
        else:
            head += "\r\n"
        return head.encode("latin-1") + body

    # --- the pool ----------------------------------------------------------------------------

    async def _take_slot(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.timeouts.pool, _expire, waiter, "pool")
        try:
            await waiter  # on success a slot was handed over, not put back
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_slot()  # handed over, then cancelled before we ran: pass it on
            raise
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _give_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.loop.time() - conn.idle_since > KEEPALIVE_EXPIRY:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = self.limits.max_response_bytes
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop, limit), self._host, self._port),
                self.timeouts.connect,
            )
        except TimeoutError as exc:
            raise _WaitExpired("connect") from exc
        return conn

    async def _exchange(
        self, conn: _Connection, method: str, path: str, data: bytes
    ) -> PooledResponse:
        done = False
        try:
            assert conn.transport is not None
            conn.begin(head_only=method == "HEAD")
            conn.transport.write(data)
            while conn.write_paused and conn.error is None and not conn.closed:
                await conn.wait("write", self.timeouts.write)
            while not conn.complete and conn.error is None and not conn.too_large:
                await conn.wait("read", self.timeouts.read)
            if conn.error is not None:
                raise conn.error
            if conn.too_large:
                limit = self.limits.max_response_bytes
                raise ResponseTooLarge(
                    f"{method} {path}: the answer {conn.too_large}, over the limit of {limit}; "
                    f"it was cut off",
                    data={"limit": limit},
                )
            if conn.encoding not in ("", "identity"):
                raise UpstreamProtocolError(
                    f"{method} {path}: the backend sent a {conn.encoding[:40]!r}-encoded "
                    f"answer; only identity is accepted"
                )
            response = PooledResponse(conn.status, conn.headers, bytes(conn.body))
            done = conn.keep_alive and not conn.closed
            return response
        finally:
            self._release(conn, reusable=done)

    def _release(self, conn: _Connection, *, reusable: bool) -> None:
        conn._parser = None
        if reusable and not self._closed and len(self._idle) < self.limits.max_keepalive:
            conn.idle_since = conn.loop.time()
            self._idle.append(conn)
        else:
            conn.close()

    def _mapped(self, exc: Exception, method: str, path: str) -> UpstreamError:
        """The one place transport and protocol failures become Roundhouse errors."""
        where = f"{method} {path[:_DETAIL_CHARS]} to {self.origin}"
        if isinstance(exc, _WaitExpired):
            phase = exc.phase
            seconds = getattr(self.timeouts, phase)
            what = "no free connection" if phase == "pool" else f"the {phase} wait ran out"
            return BackendTimeout(
                f"{where}: {what} ({phase} timeout {seconds:g} s)", phase=phase, timeout=seconds
            )
        if isinstance(exc, RemoteProtocolError):
            return BackendUnavailable(f"{where}: RemoteProtocolError: {_short(exc)}")
        # asyncio's connect errors repeat the address (port included): the reason alone.
        errno = getattr(exc, "errno", None)
        reason = os.strerror(errno) if isinstance(errno, int) and errno > 0 else "failed"
        return BackendUnavailable(f"{where}: {type(exc).__name__}: {reason}")


_PRIMITIVES: Final = (str, int, float, bool, type(None))


def _check_params(params: Mapping[str, Any]) -> None:
    """Query values must be primitives (or lists of them): anything else has no one obvious
    spelling in a query, and ``str()`` of an object is its repr."""
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else (value,)
        if not isinstance(name, str) or not all(isinstance(v, _PRIMITIVES) for v in values):
            raise InvalidInput(
                f"query parameter {str(name)[:40]!r} must be a string, number, boolean or "
                f"null (or a list of them), not {type(value).__name__}",
                field="params",
            )


def _pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Spelled as httpx spelled them: true/false, null as empty, a list as repeated names."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else (value,):
            if item is True or item is False:
                text = "true" if item else "false"
            else:
                text = "" if item is None else str(item)
            pairs.append((name, text))
    return pairs


def _short(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__)[:_DETAIL_CHARS]
