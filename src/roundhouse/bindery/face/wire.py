"""stdin and stdout as a stream of lines, for a lean stdio MCP server.

:class:`StdioWire` takes the process's descriptors for the protocol: the wire moves to private
duplicates, fd 0 becomes ``/dev/null`` and fd 1 a copy of stderr, so nothing but protocol ever
reaches the client's stdout (a stray ``print`` lands in the log). Pipes and sockets are served by
the event loop itself (no thread hop per message); anything else (a terminal, a file) by a reader
thread and blocking writes, so an interactive run still works.

:class:`LineSplitter` cuts bytes into lines. A line over the cap is never held whole: its first
and last bytes are kept so the caller can still find its id, and the next line is read as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_MAX_LINE_BYTES", "LineSplitter", "StdioWire"]

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
#: How much of an oversize line is kept to find its id: the start (ids usually lead) and the end.
OVERSIZE_HEAD_BYTES: Final = 64 * 1024
OVERSIZE_TAIL_BYTES: Final = 1024
READ_CHUNK_BYTES: Final = 256 * 1024


class LineSplitter:
    """Feed bytes, get ``on_line(line)`` per complete line and ``on_oversize(head, tail)`` per
    line over ``max_line_bytes``."""

    def __init__(
        self,
        on_line: Callable[[bytes], None],
        on_oversize: Callable[[bytes, bytes], None],
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._on_line = on_line
        self._on_oversize = on_oversize
        self._cap = max_line_bytes
        self._buffer = bytearray()
        self._skipping = False
        self._head = b""
        self._tail = b""

    def feed(self, data: bytes) -> None:
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self._tail = (self._tail + data[-OVERSIZE_TAIL_BYTES:])[-OVERSIZE_TAIL_BYTES:]
                return
            self._tail = (self._tail + data[max(0, newline - OVERSIZE_TAIL_BYTES) : newline])[
                -OVERSIZE_TAIL_BYTES:
            ]
            self._skipping = False
            self._on_oversize(self._head, self._tail)
            self._head = self._tail = b""
            data = data[newline + 1 :]
        buffer = self._buffer
        if buffer:  # the end of a line begun in an earlier chunk
            newline = data.find(b"\n")
            if newline < 0:
                buffer += data
                if len(buffer) > self._cap:
                    self._skip(buffer)
                return
            buffer += data[:newline]
            line = bytes(buffer)
            buffer.clear()
            if len(line) > self._cap:
                self._on_oversize(line[:OVERSIZE_HEAD_BYTES], line[-OVERSIZE_TAIL_BYTES:])
            else:
                self._on_line(line)
            data = data[newline + 1 :]
        rest = data[self._split(data) :]
        if len(rest) > self._cap:
            self._skip(rest)
        else:
            buffer += rest

    def _skip(self, start: bytes | bytearray) -> None:
        """An oversize line has begun: keep its ends, drop the rest up to its newline."""
        self._head = bytes(start[:OVERSIZE_HEAD_BYTES])
        self._tail = bytes(start[-OVERSIZE_TAIL_BYTES:])
        self._buffer.clear()
        self._skipping = True

    def _split(self, data: bytes) -> int:
        """Hand out every complete line of ``data``; the offset where the incomplete rest starts."""
        start = 0
        find = data.find
        cap = self._cap
        while (newline := find(b"\n", start)) >= 0:
            if newline - start > cap:
                self._on_oversize(
                    data[start : start + OVERSIZE_HEAD_BYTES],
                    data[max(start, newline - OVERSIZE_TAIL_BYTES) : newline],
                )
            else:
                self._on_line(data[start:newline])
            start = newline + 1
        return start

    def finish(self) -> None:
        """End of input: a last line without a newline still counts."""
        if self._skipping:
            self._skipping = False
            self._on_oversize(self._head, self._tail)
        elif self._buffer:
            line = bytes(self._buffer)
            self._buffer.clear()
            self._on_line(line)


class _Reader(asyncio.Protocol):
    def __init__(self, splitter: LineSplitter, eof: asyncio.Event) -> None:
        self._splitter = splitter
        self._eof = eof

    def data_received(self, data: bytes) -> None:
        self._splitter.feed(data)

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self._eof.is_set():
            self._splitter.finish()
            self._eof.set()


class StdioWire:
    """The protocol's stdin and stdout; ``eof`` is set when the input has ended."""

    def __init__(self) -> None:
        self.eof = asyncio.Event()
        self._read_fd = -1
        self._write_fd = -1
        self._read_transport: asyncio.ReadTransport | None = None
        self._write_transport: asyncio.WriteTransport | None = None
        self._restore: list[tuple[int, int]] = []
        self._pending: list[bytes] = []
        self.broken = False

    async def open(self, splitter: LineSplitter) -> None:
        """Claim fd 0 and 1 and start reading into ``splitter``."""
        loop = asyncio.get_running_loop()
        self._read_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        self._write_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
        os.dup2(2, 1)
        self._restore = [(self._read_fd, 0), (self._write_fd, 1)]
        if _streamable(self._write_fd):
            transport, _ = await loop.connect_write_pipe(
                asyncio.Protocol, os.fdopen(self._write_fd, "wb", buffering=0, closefd=False)
            )
            self._write_transport = transport
        if _streamable(self._read_fd):
            read_pipe = os.fdopen(self._read_fd, "rb", buffering=0, closefd=False)
            read_transport, _ = await loop.connect_read_pipe(
                lambda: _Reader(splitter, self.eof), read_pipe
            )
            self._read_transport = read_transport
        else:
            threading.Thread(
                target=self._read_thread, args=(loop, splitter), name="stdin", daemon=True
            ).start()

    def write(self, data: bytes) -> None:
        """Queue one answer; answers queued in the same turn of the loop go out in one write."""
        if self.broken:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending or self.broken:
            pending.clear()
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        try:
            if self._write_transport is not None:
                if self._write_transport.is_closing():
                    self.broken = True
                    return
                self._write_transport.write(data)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._write_fd, view) :]
        except OSError:
            self.broken = True  # the client stopped reading; later answers are dropped

    def pause_reading(self) -> None:
        if self._read_transport is not None:
            self._read_transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_transport is not None and not self._read_transport.is_closing():
            self._read_transport.resume_reading()

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Let written answers out (bounded), then give fd 0 and 1 back."""
        self._flush()
        if self._read_transport is not None:
            self._read_transport.close()
        transport = self._write_transport
        if transport is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    while transport.get_write_buffer_size() and not transport.is_closing():
                        await asyncio.sleep(0.005)
            transport.close()
        for private, fd in self._restore:
            with contextlib.suppress(OSError):
                os.dup2(private, fd)
        self._restore = []

    def _read_thread(self, loop: asyncio.AbstractEventLoop, splitter: LineSplitter) -> None:
        reader = _Reader(splitter, self.eof)
        while True:
            try:
                chunk = os.read(self._read_fd, READ_CHUNK_BYTES)
            except OSError:
                chunk = b""
            try:
                if chunk:
                    loop.call_soon_threadsafe(reader.data_received, chunk)
                else:
                    loop.call_soon_threadsafe(reader.eof_received)
            except RuntimeError:
                return  # the loop is closed: nobody reads any more
            if not chunk:
                return


def _streamable(fd: int) -> bool:
    """Can the event loop watch this descriptor (a pipe or a socket)?"""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
