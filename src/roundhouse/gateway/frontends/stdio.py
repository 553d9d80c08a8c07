"""The stdio frontend: Roundhouse as one desktop client's MCP server, on stdin and stdout.

The wire is newline-delimited JSON-RPC, and stdout carries nothing else. :class:`StdioPipes`
claims the process's descriptors for it: the wire moves to private duplicates, fd 0 becomes
``/dev/null`` and fd 1 a copy of stderr, so a stray ``print`` (ours, a library's) lands in the
log instead of corrupting the stream (the SDK's ``stdio_server`` does the same). Two threads do
the blocking reads and writes, so a terminal, a file or a pipe all work, no descriptor is made
non-blocking under a shared terminal, and a client that stops reading never stalls the loop.

:class:`StdioFrontend` serves the one client, mirroring the HTTP frontend:

- The era is chosen by the client's first request, as the SDK's ``serve_dual_era_loop`` does: a
  request whose ``params._meta`` carries the 2026-07-28 protocol version opens a modern
  connection (every request self-describing, served as its own throwaway session); anything
  else opens a legacy one (``initialize`` opens the session). A later claim from the other era
  is refused: ``initialize`` on a modern connection gets -32022 naming the versions served, an
  enveloped request on a legacy one gets -32600.
- Requests run concurrently, each in its own task; answers are written as they complete.
  Messages about a call (progress, logs, server-to-client requests) are written the moment they
  arrive, and so are the session's unsolicited ones (list_changed, resources/updated).
- A line that is not JSON gets -32700 with a null id, a batch -32600, a line over the cap an
  error with whatever id its first or last bytes show; the next line is read as usual.
- A request the client cancels gets no answer (the spec's SHOULD NOT).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import orjson

from roundhouse.gateway.service import Gateway, GatewayError
from roundhouse.gateway.sessions import Call, ClientSession, Scope
from roundhouse.protocol.eras import (
    CLIENT_CAPABILITIES_META_KEY,
    DISCOVER_METHOD,
    MODERN_VERSIONS,
    PROTOCOL_VERSION_META_KEY,
)
from roundhouse.protocol.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
    encode_line,
    make_error,
    recover_id,
)

__all__ = ["DEFAULT_MAX_LINE_BYTES", "StdioFrontend", "StdioPipes"]

log = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
READ_CHUNK_BYTES: Final = 256 * 1024
#: Chunks read ahead of the loop; the reader thread waits when they are not taken.
READ_AHEAD_CHUNKS: Final = 8
#: How much of an oversize line is kept to find its id: the start (ids usually lead) and the end.
OVERSIZE_HEAD_BYTES: Final = 64 * 1024
OVERSIZE_TAIL_BYTES: Final = 1024
#: Seconds calls in flight when the input ends still get to answer (a piped script's last calls).
EOF_GRACE: Final = 2.0
#: Seconds written answers get to reach the client when the pipes close.
WRITE_FLUSH_TIMEOUT: Final = 2.0
#: Requests that do not wait for the servers to start: they are the gateway's own.
_NO_STARTUP_WAIT: Final = frozenset({"ping", DISCOVER_METHOD})
_AGGREGATE: Final = Scope(None)


# --- the pipes ------------------------------------------------------------------------------------


class StdioPipes:
    """The wire on two descriptors, read and written by two daemon threads.

    ``read`` returns ``b""`` at the end of input; ``broken`` is set when the client stopped
    reading (a write failed), after which writes are dropped.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._restore: list[tuple[int, int]] = []
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue(READ_AHEAD_CHUNKS)
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._eof = False
        self.broken = asyncio.Event()

    @classmethod
    def claim(cls) -> StdioPipes:
        """Take fd 0 and 1 for the wire; from now on fd 0 reads nothing and fd 1 is stderr."""
        read_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        write_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
        os.dup2(2, 1)
        pipes = cls(read_fd, write_fd)
        pipes._restore = [(read_fd, 0), (write_fd, 1)]
        return pipes

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._read_thread, args=(loop,), name="stdio reader", daemon=True
        ).start()
        self._writer = threading.Thread(
            target=self._write_thread, args=(loop,), name="stdio writer", daemon=True
        )
        self._writer.start()

    async def read(self, n: int = -1) -> bytes:
        if self._eof:
            return b""
        chunk = await self._chunks.get()
        if not chunk:
            self._eof = True
        return chunk

    def write(self, data: bytes) -> None:
        if not self.broken.is_set():
            self._out.put(data)

    async def close(self) -> None:
        """Let written answers out (bounded), then give fd 0 and 1 back."""
        self._out.put(None)
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WRITE_FLUSH_TIMEOUT):
                    while writer.is_alive():
                        await asyncio.sleep(0.01)
        # The private descriptors stay open: a thread may still be blocked on one.
        for private, fd in self._restore:
            with contextlib.suppress(OSError):
                os.dup2(private, fd)
        self._restore = []

    def _read_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                chunk = os.read(self._read_fd, READ_CHUNK_BYTES)
            except OSError as exc:
                log.warning("reading stdin failed: %s", exc)
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(self._chunks.put(chunk), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the loop is gone or shutting down: nobody reads any more
            if not chunk:
                return

    def _write_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        broken = False
        while True:
            item = self._out.get()
            batch = [item] if item is not None else []
            while item is not None:  # take what else is queued: one write for a burst
                try:
                    item = self._out.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            if batch and not broken:
                try:
                    _write_all(self._write_fd, b"".join(batch))
                except OSError as exc:
                    broken = True
                    log.info("the client stopped reading: %s", exc)
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self.broken.set)
            if item is None:
                return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- lines ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Oversize:
    """A line over the cap, never held whole: its first and last bytes, to find its id."""

    head: bytes
    tail: bytes


async def _lines(
    read: Callable[[int], Awaitable[bytes]], cap: int
) -> AsyncIterator[bytes | _Oversize]:
    """Split chunks into lines; a line over ``cap`` bytes is skipped to its end, and reported."""
    partial = bytearray()
    skipping = False
    head = tail = b""
    while chunk := await read(READ_CHUNK_BYTES):
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            piece = chunk[start:] if newline < 0 else chunk[start:newline]
            if skipping:
                tail = (tail + piece[-OVERSIZE_TAIL_BYTES:])[-OVERSIZE_TAIL_BYTES:]
            else:
                partial += piece
                if len(partial) > cap:
                    head = bytes(partial[:OVERSIZE_HEAD_BYTES])
                    tail = bytes(partial[-OVERSIZE_TAIL_BYTES:])
                    partial = bytearray()
                    skipping = True
            if newline < 0:
                break
            if skipping:
                skipping = False
                yield _Oversize(head, tail)
            else:
                yield bytes(partial)
                partial.clear()
            start = newline + 1
    if partial.strip() and not skipping:
        yield bytes(partial)  # a last line without its newline


# --- the frontend ---------------------------------------------------------------------------------


def _drop(message: Message) -> None:
    """The default sink of a call that was never given one."""


@dataclass(eq=False, slots=True)
class _LineCall(Call):
    """A call whose related messages go straight out: stdio has no stream per call."""

    send: Callable[[Message], None] = _drop

    def deliver(self, message: Message) -> None:
        self.send(message)


class StdioFrontend:
    """Serves one client on the aggregate scope: every server, names namespaced.

    ``startup``, when given, is awaited (once, shared) before the first request that reaches
    the servers, so that the client's first ``tools/list`` sees the servers that start with the
    gateway; it must bound its own wait.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        startup: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.gateway = gateway
        self.max_line_bytes = max_line_bytes
        self._startup = startup
        self._started: asyncio.Task[None] | None = None
        self._write: Callable[[bytes], None] = _discard
        self._era: str | None = None
        self._session: ClientSession | None = None
        self._calls: dict[Any, _LineCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def serve(
        self, read: Callable[[int], Awaitable[bytes]], write: Callable[[bytes], None]
    ) -> None:
        """Serve until the input ends (then calls in flight get :data:`EOF_GRACE` to answer)
        or until cancelled; either way every call is stopped and the session closed."""
        self._write = write
        if self._startup is not None:
            self._started = asyncio.create_task(self._startup(), name="stdio startup")
        try:
            async for line in _lines(read, self.max_line_bytes):
                if isinstance(line, _Oversize):
                    self._oversize(line)
                else:
                    self._line(line)
            calls = [call.task for call in self._calls.values() if call.task is not None]
            if calls:
                await asyncio.wait(calls, timeout=EOF_GRACE)
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._session is not None:
            self.gateway.sessions.close(self._session.id)
        tasks = list(self._tasks)
        if self._started is not None:
            tasks.append(self._started)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def send(self, message: Message) -> None:
        self._write(encode_line(message))

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- one line -----------------------------------------------------------------------------

    def _oversize(self, line: _Oversize) -> None:
        request_id = recover_id(line.head, line.tail)
        log.warning("dropped a line over %d bytes (id %r)", self.max_line_bytes, request_id)
        self.send(
            make_error(
                request_id,
                INVALID_REQUEST,
                f"message over {self.max_line_bytes} bytes",
                {"max_line_bytes": self.max_line_bytes},
            )
        )

    def _line(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():  # blank lines are framing slack
                self.send(make_error(None, PARSE_ERROR, "Parse error: the line is not JSON"))
            return
        if isinstance(message, list):
            self.send(make_error(None, INVALID_REQUEST, "batch requests are not supported"))
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self.send(
                make_error(
                    _readable_id(message), INVALID_REQUEST, "Invalid Request: not JSON-RPC 2.0"
                )
            )
            return
        method = message.get("method")
        if method is None and "id" in message and ("result" in message or "error" in message):
            self._client_response(message)
        elif not isinstance(method, str):
            self.send(
                make_error(
                    _readable_id(message), INVALID_REQUEST, "Invalid Request: no method string"
                )
            )
        elif "id" not in message:
            self._notification(method, message)
        elif _readable_id(message) is None:
            self.send(make_error(None, INVALID_REQUEST, "Invalid Request: bad id type"))
        else:
            self._request(method, message)

    def _client_response(self, message: Message) -> None:
        # 2026-07-28 clients answer no server-to-client requests; there are none to answer.
        if self._session is None or not self.gateway.relay.client_response(self._session, message):
            log.debug("dropped an answer to no request of ours (id %r)", message.get("id"))

    def _notification(self, method: str, message: Message) -> None:
        params = message.get("params")
        if method == "notifications/initialized":
            if self._session is not None:
                self._session.initialized = True
        elif method == "notifications/cancelled" and isinstance(params, dict):
            call = self._calls.get(params.get("requestId"))
            if call is not None:
                self.gateway.cancel(call.session, call.client_id)

    def _request(self, method: str, message: Message) -> None:
        request_id = message["id"]
        params = message.get("params")
        enveloped = _enveloped(params)
        if self._era is None:
            self._era = "modern" if enveloped and method != "initialize" else "legacy"
        if request_id in self._calls:
            self.send(make_error(request_id, INVALID_REQUEST, "this id is already in flight"))
            return
        try:
            session = (
                self._legacy(request_id, method, params, enveloped)
                if self._era == "legacy"
                else self._modern(method, params)
            )
        except GatewayError as exc:
            self.send(make_error(request_id, exc.code, exc.message, exc.data))
            return
        if session is None:
            return  # answered already
        call = _LineCall(session, request_id, method, send=self.send)
        session.calls[request_id] = call
        self._calls[request_id] = call
        call.task = self._spawn(self._serve_call(call, message), f"{method} {request_id!r}")

    def _legacy(
        self, request_id: Any, method: str, params: Any, enveloped: bool
    ) -> ClientSession | None:
        if enveloped and method != "initialize":
            raise GatewayError(
                INVALID_REQUEST,
                "this connection serves the handshake protocol era; requests carrying the"
                " 2026-07-28 envelope are not accepted on it",
            )
        if self._session is not None:
            return self._session
        if method == "initialize":
            # Inline, so that a request pipelined behind it finds the session open.
            session, result = self.gateway.open_session(_AGGREGATE, params)
            self._session = session
            session.streaming = True
            self._spawn(self._pump(session), "stdio outbox")
            self.send({"jsonrpc": "2.0", "id": request_id, "result": result})
            return None
        if method == "ping":
            self.send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == DISCOVER_METHOD:
            result = self.gateway.discover(_AGGREGATE)
            self.send({"jsonrpc": "2.0", "id": request_id, "result": result})
        else:
            raise GatewayError(INVALID_REQUEST, "the session is not initialized yet")
        return None

    def _modern(self, method: str, params: Any) -> ClientSession:
        if method == "initialize":
            requested = params.get("protocolVersion") if isinstance(params, dict) else None
            raise GatewayError(
                UNSUPPORTED_PROTOCOL_VERSION,
                "this connection serves the 2026-07-28 protocol; initialize is not accepted",
                data={"supported": list(MODERN_VERSIONS), "requested": requested},
            )
        meta = params.get("_meta") if isinstance(params, dict) else None
        if not isinstance(meta, dict) or CLIENT_CAPABILITIES_META_KEY not in meta:
            raise GatewayError(
                INVALID_PARAMS,
                "params._meta must carry the protocol version and client capabilities",
            )
        version = meta.get(PROTOCOL_VERSION_META_KEY)
        if version not in MODERN_VERSIONS:
            raise GatewayError(
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                data={"supported": list(MODERN_VERSIONS), "requested": version},
            )
        return self.gateway.sessions.modern(_AGGREGATE, str(version), meta)

    async def _serve_call(self, call: _LineCall, message: Message) -> None:
        try:
            if self._started is not None and call.method not in _NO_STARTUP_WAIT:
                await asyncio.shield(self._started)
            response = await self.gateway.request(call, message)
        finally:
            call.session.calls.pop(call.client_id, None)
            self._calls.pop(call.client_id, None)
        self.send(response)

    async def _pump(self, session: ClientSession) -> None:
        """The session's unsolicited messages, written as they come."""
        while True:
            self.send(await session.outbox.get())


def _discard(data: bytes) -> None:
    """Where lines go before ``serve`` is given a writer."""


def _enveloped(params: Any) -> bool:
    """Does the request carry the 2026-07-28 envelope? Its version key is the one signal (the
    SDK's ``_has_modern_envelope``): legacy requests carry ``_meta`` too (``progressToken``)."""
    if not isinstance(params, dict):
        return False
    meta = params.get("_meta")
    return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta


def _readable_id(message: Any) -> Any:
    """The request's id if it is one JSON-RPC allows (a string or an integer), else None."""
    if not isinstance(message, dict):
        return None
    request_id = message.get("id")
    if isinstance(request_id, str) or (
        isinstance(request_id, int) and not isinstance(request_id, bool)
    ):
        return request_id
    return None
