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
from typing import TYPE_CHECKING, Any, Final

import orjson

from roundhouse.gateway.sessions import Call, ClientSession, Scope
from roundhouse.protocol.eras import (
    CLIENT_CAPABILITIES_META_KEY,
    DISCOVER_METHOD,
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
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

if TYPE_CHECKING:
    # Not imported at run time: the frontend starts before the gateway's imports are done.
    from roundhouse.gateway.service import Gateway

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
_LISTEN: Final = "subscriptions/listen "


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
        """Let written answers out (bounded); later writes are dropped."""
        self._out.put(None)
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WRITE_FLUSH_TIMEOUT):
                    while writer.is_alive():
                        await asyncio.sleep(0.01)
        self.broken.set()

    def release(self) -> None:
        """Give fd 0 and 1 back to the wire (after :meth:`close`)."""
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
    partial = bytearray()  # the start of a line whose end has not arrived
    skipping = False  # inside an oversize line: drop bytes up to the next newline
    head = tail = b""
    while chunk := await read(READ_CHUNK_BYTES):
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            if skipping:
                tail = (tail + chunk[max(start, end - OVERSIZE_TAIL_BYTES) : end])[
                    -OVERSIZE_TAIL_BYTES:
                ]
            elif not partial and newline >= 0 and end - start <= cap:
                yield chunk[start:end]  # the usual case: a whole line within one chunk
            else:
                partial += chunk[start:end]
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
            elif partial:
                yield bytes(partial)
                partial = bytearray()
            start = newline + 1
    if partial.strip() and not skipping:
        yield bytes(partial)  # a last line without its newline


# --- the frontend ---------------------------------------------------------------------------------


class _Refusal(Exception):
    """A request answered with an error before it reaches the gateway."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class StdioFrontend:
    """Serves one client on the aggregate scope: every server, names namespaced.

    The frontend may start before the gateway exists (:meth:`attach` hands it over): a desktop
    client waits for ``initialize``, and the answer does not depend on the servers. Until then
    ``initialize`` and ``ping`` are answered at once and every other request waits.

    ``startup``, given to :meth:`attach`, is awaited (once, shared) before the first request
    that reaches the servers, so that the client's first ``tools/list`` sees the servers that
    start with the gateway; it must bound its own wait.
    """

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self.gateway: Gateway | None = None
        self._attached: asyncio.Future[Gateway] | None = None
        self._started: asyncio.Task[None] | None = None
        self._write: Callable[[bytes], None] = _discard
        self._era: str | None = None
        self._session: ClientSession | None = None
        #: The client's ``initialize`` params, answered before the gateway was attached.
        self._hello: dict[str, Any] | None = None
        self._hello_done = False
        self._inflight: dict[Any, asyncio.Task[None]] = {}
        self._pump_task: asyncio.Task[None] | None = None

    @property
    def attached(self) -> bool:
        return self.gateway is not None

    def attach(
        self,
        gateway: Gateway,
        *,
        startup: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Hand over the gateway; requests waiting for it go on."""
        self.gateway = gateway
        if startup is not None:
            self._started = asyncio.create_task(startup(), name="stdio startup")
        if self._hello is not None:
            self._open(gateway, self._hello)
        if self._attached is not None and not self._attached.done():
            self._attached.set_result(gateway)

    async def serve(
        self, read: Callable[[int], Awaitable[bytes]], write: Callable[[bytes], None]
    ) -> None:
        """Serve until the input ends (then calls in flight get :data:`EOF_GRACE` to answer)
        or until cancelled; either way every call is stopped and the session closed."""
        self._write = write
        self._attached = asyncio.get_running_loop().create_future()
        if self.gateway is not None:
            self._attached.set_result(self.gateway)
        try:
            async for line in _lines(read, self.max_line_bytes):
                if isinstance(line, _Oversize):
                    self._oversize(line)
                else:
                    self._line(line)
            # A listen stream never ends by itself: only calls are waited for.
            calls = [t for t in self._inflight.values() if not t.get_name().startswith(_LISTEN)]
            if calls:
                await asyncio.wait(calls, timeout=EOF_GRACE)
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._session is not None and self.gateway is not None:
            self.gateway.sessions.close(self._session.id)
        tasks = [*self._inflight.values(), self._pump_task, self._started]
        waits = [task for task in tasks if task is not None]
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    def send(self, message: Message) -> None:
        self._write(encode_line(message))

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
        request_id = _readable_id(message)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self.send(make_error(request_id, INVALID_REQUEST, "Invalid Request: not JSON-RPC 2.0"))
            return
        method = message.get("method")
        if method is None and "id" in message and ("result" in message or "error" in message):
            self._client_response(message)
        elif not isinstance(method, str):
            self.send(make_error(request_id, INVALID_REQUEST, "Invalid Request: no method"))
        elif "id" not in message:
            self._notification(method, message)
        elif request_id is None:
            self.send(make_error(None, INVALID_REQUEST, "Invalid Request: bad id type"))
        elif request_id in self._inflight:
            self.send(make_error(request_id, INVALID_REQUEST, "this id is already in flight"))
        else:
            self._request(request_id, method, message)

    def _client_response(self, message: Message) -> None:
        # 2026-07-28 clients have no server-to-client requests to answer.
        gateway, session = self.gateway, self._session
        if (
            gateway is None
            or session is None
            or not gateway.relay.client_response(session, message)
        ):
            log.debug("dropped an answer to no request of ours (id %r)", message.get("id"))

    def _notification(self, method: str, message: Message) -> None:
        params = message.get("params")
        if method == "notifications/initialized":
            if self._session is not None:
                self._session.initialized = True
            else:
                self._hello_done = True
        elif method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            if type(request_id) not in (str, int):
                return  # names no request (and may not even hash)
            task = self._inflight.get(request_id)
            if task is None:
                return
            session = self._session
            if self.gateway is not None and session is not None and request_id in session.calls:
                self.gateway.cancel(session, request_id)
            else:
                task.cancel()  # still waiting for the gateway, or a one-request modern session

    def _request(self, request_id: Any, method: str, message: Message) -> None:
        params = message.get("params")
        enveloped = _enveloped(params)
        if self._era is None:
            self._era = "modern" if enveloped and method != "initialize" else "legacy"
        try:
            if self._era == "legacy" and self._handshake(request_id, method, params, enveloped):
                return
        except _Refusal as exc:
            self.send(make_error(request_id, exc.code, exc.message, exc.data))
            return
        task = asyncio.create_task(
            self._serve_call(request_id, method, message), name=f"{method} {request_id!r}"
        )
        self._inflight[request_id] = task
        task.add_done_callback(lambda _: self._inflight.pop(request_id, None))

    def _handshake(self, request_id: Any, method: str, params: Any, enveloped: bool) -> bool:
        """The legacy requests answered on the spot; True if this one was."""
        if enveloped and method != "initialize":
            raise _Refusal(
                INVALID_REQUEST,
                "this connection serves the handshake protocol era; requests carrying the"
                " 2026-07-28 envelope are not accepted on it",
            )
        if method == "initialize" and self._session is None and self._hello is None:
            # Inline, so that a request pipelined behind it finds the session open.
            if not isinstance(params, dict):
                raise _Refusal(INVALID_PARAMS, "initialize needs params")
            if self.gateway is not None:
                result = self._open(self.gateway, params)
            else:
                self._hello = params
                result = _early_initialize(params)
            self.send({"jsonrpc": "2.0", "id": request_id, "result": result})
            return True
        if method == "ping" and self._session is None and self._hello is None:
            self.send({"jsonrpc": "2.0", "id": request_id, "result": {}})
            return True
        return False

    def _open(self, gateway: Gateway, params: dict[str, Any]) -> dict[str, Any]:
        session, result = gateway.open_session(_AGGREGATE, params)
        session.initialized = self._hello_done
        session.streaming = True
        self._session = session
        self._pump_task = asyncio.create_task(self._pump(session), name="stdio outbox")
        return result

    async def _serve_call(self, request_id: Any, method: str, message: Message) -> None:
        gateway = self.gateway
        if gateway is None:
            assert self._attached is not None
            gateway = await asyncio.shield(self._attached)
        try:
            session = self._session_for(gateway, request_id, method, message.get("params"))
        except _Refusal as exc:
            self.send(make_error(request_id, exc.code, exc.message, exc.data))
            return
        if session is None:
            return
        # Related messages go straight out: stdio has no stream per call.
        call = Call(session, request_id, method, sink=self.send)
        call.task = asyncio.current_task()
        session.calls[request_id] = call
        try:
            if self._started is not None and method not in _NO_STARTUP_WAIT:
                with contextlib.suppress(Exception):  # a failed wait is logged by the loop
                    await asyncio.shield(self._started)
            response = await gateway.request(call, message)
        finally:
            session.calls.pop(request_id, None)
        self.send(response)

    def _session_for(
        self, gateway: Gateway, request_id: Any, method: str, params: Any
    ) -> ClientSession | None:
        """The session a request runs in; None when it was answered here."""
        if self._era == "legacy":
            if self._session is not None:
                return self._session
            if method == DISCOVER_METHOD:
                self.send(
                    {"jsonrpc": "2.0", "id": request_id, "result": gateway.discover(_AGGREGATE)}
                )
                return None
            raise _Refusal(INVALID_REQUEST, "the session is not initialized yet")
        if method == "initialize":
            requested = params.get("protocolVersion") if isinstance(params, dict) else None
            raise _Refusal(
                UNSUPPORTED_PROTOCOL_VERSION,
                "this connection serves the 2026-07-28 protocol; initialize is not accepted",
                {"supported": list(MODERN_VERSIONS), "requested": requested},
            )
        meta = params.get("_meta") if isinstance(params, dict) else None
        if not isinstance(meta, dict) or CLIENT_CAPABILITIES_META_KEY not in meta:
            raise _Refusal(
                INVALID_PARAMS,
                "params._meta must carry the protocol version and client capabilities",
            )
        version = meta.get(PROTOCOL_VERSION_META_KEY)
        if version not in MODERN_VERSIONS:
            raise _Refusal(
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                {"supported": list(MODERN_VERSIONS), "requested": version},
            )
        return gateway.sessions.modern(_AGGREGATE, str(version), meta)

    async def _pump(self, session: ClientSession) -> None:
        """The session's unsolicited messages, written as they come."""
        while True:
            self.send(await session.outbox.get())


def _early_initialize(params: dict[str, Any]) -> dict[str, Any]:
    """What ``Gateway.open_session`` answers on the aggregate scope, before there is a gateway:
    the answer depends on the client's version and on nothing the servers say."""
    from roundhouse.gateway.service import GATEWAY_CAPABILITIES, SERVER_INFO

    requested = params.get("protocolVersion")
    version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE_VERSION
    return {
        "protocolVersion": version,
        "capabilities": GATEWAY_CAPABILITIES,
        "serverInfo": SERVER_INFO,
    }


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
