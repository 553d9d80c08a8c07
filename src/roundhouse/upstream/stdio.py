"""A JSON-RPC connection over a server process's stdout (read) and stdin (write).

Framing is newline-delimited JSON. The reader takes chunks and splits on ``\\n`` itself, so a line
of any size costs one pass and a line over ``max_line_bytes`` is never held in memory whole: it is
skipped, and only the request it answers (if its id can be read from its first or last bytes)
fails. Lines that are not JSON are counted and dropped; a server's chatter never kills the reader.

Lifecycle. The reader is ``run()``: the owner (the supervisor) starts it once in its own task group
and learns the stream ended when it returns. For simple owners and tests, ``async with conn:``
starts ``run()`` in a task the connection owns and cancels it on exit. Either way, when the stream
ends every pending request fails at once with UpstreamClosed; ``abort()`` does the same on the
owner's word (the process exited but a grandchild still holds stdout open). A reader that can
push (a process's stdout, ``control.runtimes.process.PushReader``) hands its chunks to the parser
from the pipe's callback, so an answer resolves its caller without waking ``run()``, which then
only waits for the end of the stream.

Ids on the wire are ours (1, 2, 3 ...). ``send_request_raw`` forwards a client's request under one
of them and puts the client's id back on the answer, so many sessions can share one process.

Timeouts. Each request has a deadline, but not a timer of its own: one timer per connection
(``_sweep``) is armed at the earliest deadline and, when it fires, fails every request past its
deadline and re-arms at the next. Requests sent with the same timeout have rising deadlines, so
on the hot path a request only compares its deadline with the armed one (a timer per request
costs a heap push, a handle, and a cancelled handle left in the loop's heap).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol

import orjson

from roundhouse.errors import UpstreamClosed, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from roundhouse.protocol.jsonrpc import Message, RequestId, recover_id
from roundhouse.upstream.base import (
    MessageHandler,
    deliver_incoming,
    encode_for_upstream,
    result_of,
)

__all__ = ["DEFAULT_MAX_LINE_BYTES", "ByteReader", "ByteWriter", "StdioConnection", "StdioStats"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
READ_CHUNK_BYTES: Final = 256 * 1024
# How much of an oversize line is kept to find its id: the start (ids usually lead) and the end.
OVERSIZE_HEAD_BYTES: Final = 64 * 1024
OVERSIZE_TAIL_BYTES: Final = 1024
# Requests the protocol forbids cancelling.
_UNCANCELLABLE: Final = frozenset({"initialize", "server/discover"})


class ByteReader(Protocol):
    """What we read from: ``asyncio.StreamReader`` (a process's stdout) fits."""

    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    """What we write to: ``asyncio.StreamWriter`` (a process's stdin) fits."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


@dataclass(slots=True)
class StdioStats:
    garbage_lines: int = 0  # not JSON-RPC; dropped
    oversize_lines: int = 0  # over max_line_bytes; dropped (its request failed if identified)
    unmatched_responses: int = 0  # answers to no pending request (late, after a timeout)
    requests_sent: int = 0
    messages_received: int = 0


# A deadline this close counts as reached: the loop may run a timer a hair before its time.
_DEADLINE_SLACK: Final = 0.001


class _Pending:
    __slots__ = ("client_id", "deadline", "future", "method", "timeout")

    def __init__(
        self,
        method: str,
        future: asyncio.Future[Message],
        client_id: Any,
        deadline: float,
        timeout: float,
    ) -> None:
        self.method = method
        self.future = future
        self.client_id = client_id  # the id to restore on the answer (raw path), else _OURS
        self.deadline = deadline  # loop time
        self.timeout = timeout


_OURS: Final = object()


class StdioConnection:
    """JSON-RPC over a byte stream pair; implements ``upstream.base.Connection``."""

    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        on_message: MessageHandler | None = None,
        name: str = "stdio",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_line_bytes = max_line_bytes
        self._on_message = on_message
        self.name = name
        self.stats = StdioStats()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._closed_reason: str | None = None
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        # The line parser's state between chunks (_feed).
        self._partial = bytearray()  # the start of a line whose end has not arrived
        self._skipping = False  # inside an oversize line: drop bytes up to the next newline
        self._head = b""  # an oversize line's first and last bytes, to find its id
        self._tail = b""
        # An asyncio.StreamWriter exposes its transport: writes go to it directly (the
        # writer's own methods only forward there), and how much a write left in its buffer
        # says whether there is anything to drain.
        transport = getattr(writer, "transport", None)
        self._buffered: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
        self._sink_write: Callable[[bytes], None] = writer.write
        self._sink_closing: Callable[[], bool] = writer.is_closing
        if transport is not None and self._buffered is not None:
            self._sink_write, self._sink_closing = transport.write, transport.is_closing

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def pending_count(self) -> int:
        """Requests awaiting an answer (for least-outstanding balancing)."""
        return len(self._pending)

    async def __aenter__(self) -> StdioConnection:
        self._task = asyncio.create_task(self.run(), name=f"{self.name} reader")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def run(self) -> None:
        """Read until the stream ends, then fail whatever is pending. May be called once."""
        if self._running:
            raise RuntimeError("StdioConnection.run() may be called once")
        self._running = True
        try:
            await self._read_loop()
        except (OSError, ValueError) as exc:  # a broken pipe, a reader fed after close
            self._shut(f"{self.name}: reading from the server failed: {exc}")
        else:
            self._shut(f"{self.name}: the server closed its stdout")
        finally:
            # Cancelled or crashed: still no request may hang.
            self._shut(f"{self.name}: the connection's reader stopped")

    def abort(self, reason: str) -> None:
        """Fail every pending request with UpstreamClosed(reason) now; later calls fail at once."""
        self._shut(reason)

    async def aclose(self) -> None:
        """Close stdin (the server's cue to exit), fail pending requests, stop an owned reader."""
        self._shut(f"{self.name}: the connection was closed by Roundhouse")
        if not self._writer.is_closing():
            with contextlib.suppress(OSError):
                self._writer.close()
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        # Collect the reader's end, so a crash in it is logged rather than lost.
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("%s: the reader failed", self.name)

    def _shut(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(
                    UpstreamClosed(f"{reason} (while awaiting {entry.method})")
                )

    # -- sending ---------------------------------------------------------------------------------

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float
    ) -> dict[str, Any]:
        message: Message = {"jsonrpc": "2.0", "id": 0, "method": method}
        if params is not None:
            message["params"] = params
        return result_of(await self._roundtrip(message, method, _OURS, timeout), method)

    def send_request_raw(
        self, message: Message, timeout: float, headers: dict[str, str] | None = None
    ) -> Coroutine[Any, Any, Message]:
        """Forward a request under our own id; the answer (result or error) gets its id back.
        (``headers`` are an HTTP matter: stdio has none.) The round trip's own coroutine is
        returned, not wrapped in another: one frame less on every resume of the hot path."""
        method = message.get("method")
        return self._roundtrip(
            dict(message), method if isinstance(method, str) else "?", message.get("id"), timeout
        )

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def send(self, message: Message) -> None:
        self._write(encode_for_upstream(message, newline=True))
        await self._drain()

    async def _roundtrip(
        self, message: Message, method: str, client_id: Any, timeout: float
    ) -> Message:
        if self._closed_reason is not None:
            raise UpstreamClosed(f"{self._closed_reason} (cannot send {method})")
        request_id = next(self._ids)
        message["id"] = request_id
        # One loop for the connection's life (its pipes belong to it); asked once, since
        # get_running_loop() on 3.11 asks the kernel for the pid every time.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        # One deadline over the write (a full pipe blocks drain) and the wait for the answer.
        deadline = loop.time() + timeout
        self._pending[request_id] = _Pending(method, future, client_id, deadline, timeout)
        if self._sweep is None or deadline < self._sweep_at:
            self._arm(loop, deadline)
        try:
            self._write(encode_for_upstream(message, newline=True))
            self.stats.requests_sent += 1
            buffered = self._buffered
            if buffered is None or buffered():
                # The pipe did not take it all: wait for room, within the deadline.
                async with asyncio.timeout_at(deadline):
                    await self._drain()
            return await future  # failed by _expire at the deadline
        except TimeoutError:  # from the drain
            self._cancel_upstream(request_id, method, "timed out")
            raise _timed_out(self.name, method, timeout) from None
        except asyncio.CancelledError:
            self._cancel_upstream(request_id, method, "cancelled by the caller")
            raise
        finally:
            self._pending.pop(request_id, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = deadline
        self._sweep = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """The sweep: fail every request past its deadline, then re-arm at the next one."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time() + _DEADLINE_SLACK
        following: float | None = None
        for request_id, entry in list(self._pending.items()):
            if entry.deadline > now:
                if following is None or entry.deadline < following:
                    following = entry.deadline
                continue
            del self._pending[request_id]
            if not entry.future.done():
                entry.future.set_exception(_timed_out(self.name, entry.method, entry.timeout))
                self._cancel_upstream(request_id, entry.method, "timed out")
        if following is not None:
            self._arm(loop, following)

    def _cancel_upstream(self, request_id: int, method: str, reason: str) -> None:
        """Tell the server we stopped waiting (best effort, no await: we may be cancelled)."""
        if method in _UNCANCELLABLE or self._closed_reason is not None:
            return
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        with contextlib.suppress(UpstreamError):
            self._write(orjson.dumps(note, option=orjson.OPT_APPEND_NEWLINE))

    def _write(self, data: bytes) -> None:
        if self._sink_closing():
            raise UpstreamClosed(f"{self._closed_reason or self.name + ': stdin is closed'}")
        try:
            self._sink_write(data)
        except (OSError, RuntimeError) as exc:
            raise UpstreamClosed(f"{self.name}: writing to the server failed: {exc}") from exc

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise UpstreamClosed(f"{self.name}: writing to the server failed: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        push_to = getattr(self._reader, "push_to", None)
        if push_to is not None:
            # A process's stdout (control.runtimes.process.PushReader): its chunks come to
            # _pushed from the pipe's callback, so an answer resolves its caller right there;
            # this task only waits for the end of the stream.
            push_to(self._pushed)
            await self._reader.read(1)
            return
        read = self._reader.read
        while chunk := await read(READ_CHUNK_BYTES):
            self._feed(chunk)

    def _pushed(self, chunk: bytes) -> None:
        if self._closed_reason is not None:
            return  # closed: what the server still says has no one to go to
        try:
            self._feed(chunk)
        except Exception:  # in the pipe's callback: nothing above us would end the connection
            logger.exception("%s: reading the server's output failed", self.name)
            self._shut(f"{self.name}: reading the server's output failed")

    def _feed(self, chunk: bytes) -> None:
        """Split a chunk of the stream into lines and handle each; keep an unfinished line."""
        cap = self._max_line_bytes
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                rest = chunk[start:]
                if self._skipping:
                    self._tail = (self._tail + rest[-OVERSIZE_TAIL_BYTES:])[-OVERSIZE_TAIL_BYTES:]
                elif rest:
                    partial = self._partial
                    partial += rest
                    if len(partial) > cap:
                        self._head = bytes(partial[:OVERSIZE_HEAD_BYTES])
                        self._tail = bytes(partial[-OVERSIZE_TAIL_BYTES:])
                        self._partial = bytearray()
                        self._skipping = True
                return
            if self._skipping:
                end = chunk[max(start, newline - OVERSIZE_TAIL_BYTES) : newline]
                self._skipping = False
                self._oversize(self._head, (self._tail + end)[-OVERSIZE_TAIL_BYTES:])
                self._head = self._tail = b""
            elif partial := self._partial:
                partial += chunk[start:newline]
                self._partial = bytearray()
                if len(partial) > cap:
                    self._oversize(
                        bytes(partial[:OVERSIZE_HEAD_BYTES]), bytes(partial[-OVERSIZE_TAIL_BYTES:])
                    )
                else:
                    self._line(partial)
            elif newline - start > cap:
                self._oversize(
                    chunk[start : start + OVERSIZE_HEAD_BYTES],
                    chunk[newline - OVERSIZE_TAIL_BYTES : newline],
                )
            else:
                self._line(chunk[start:newline])
            start = newline + 1

    def _line(self, line: bytes | bytearray) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():  # blank lines are framing slack, not garbage
                self.stats.garbage_lines += 1
                logger.debug("%s: dropped a non-JSON line of %d bytes", self.name, len(line))
            return
        if isinstance(message, dict):
            self._dispatch(message)
        elif isinstance(message, list):  # a batch (pre-2025-06-18 servers)
            for item in message:
                if isinstance(item, dict):
                    self._dispatch(item)
                else:
                    self.stats.garbage_lines += 1
        else:
            self.stats.garbage_lines += 1

    def _dispatch(self, message: Message) -> None:
        self.stats.messages_received += 1
        if "method" in message:
            self._incoming(message)
            return
        request_id = message.get("id")
        entry = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if entry is None:
            self.stats.unmatched_responses += 1
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
            with contextlib.suppress(UpstreamError):
                self._write(orjson.dumps(answer, option=orjson.OPT_APPEND_NEWLINE))

    def _oversize(self, head: bytes, tail: bytes) -> None:
        self.stats.oversize_lines += 1
        request_id: RequestId | None = recover_id(head, tail)
        entry = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        logger.warning(
            "%s: dropped a line over %d bytes (id %r)", self.name, self._max_line_bytes, request_id
        )
        if entry is not None and not entry.future.done():
            entry.future.set_exception(
                UpstreamProtocolError(
                    f"{self.name}: the answer to {entry.method} exceeds the "
                    f"{self._max_line_bytes}-byte line cap",
                    data={"method": entry.method, "max_line_bytes": self._max_line_bytes},
                )
            )


def _timed_out(name: str, method: str, timeout: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"{name}: no answer to {method} within {timeout:g} s",
        data={"method": method, "timeout": timeout},
    )
