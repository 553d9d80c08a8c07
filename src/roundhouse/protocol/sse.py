"""An incremental decoder for ``text/event-stream`` (the WHATWG server-sent events format).

Fed the bytes of a stream as they arrive, it yields whole events. Lines end in CRLF, LF or CR
(a CR at the end of one chunk and an LF at the start of the next are one break); a line that
starts with ``:`` is a comment; ``data`` lines are joined with ``\\n``; an event without data is
not dispatched, and neither is the unfinished event at the end of the stream, as the format says.

The decoder never holds more than ``max_event_bytes`` of one event: the moment an event goes
over the cap it yields an :class:`OversizeEvent` with the first bytes of its data, so the reader
can tell at once which request the event answered (``jsonrpc.recover_id``: ids usually lead),
and drops the rest of the event up to its blank line. An endless line without a newline
therefore costs the cap, no more, and the request it answers fails without waiting for its end.

Nothing here does I/O; the HTTP+SSE upstream connection feeds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["OversizeEvent", "SseDecoder", "SseEvent"]

#: How much of an oversize event's data is kept to find its id.
OVERSIZE_HEAD_BYTES: Final = 64 * 1024

_BREAK = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its type (``message`` unless named) and its data, as bytes."""

    event: str
    data: bytes
    id: str | None = None


@dataclass(frozen=True, slots=True)
class OversizeEvent:
    """An event that went over the cap and is being dropped; ``head``: its data's first bytes."""

    head: bytes


class SseDecoder:
    """Bytes in, events out: ``decoder.feed(chunk)`` returns the events the chunk completed."""

    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        self._line = bytearray()  # the start of a line whose end has not arrived
        self._data = bytearray()
        self._has_data = False
        self._event = ""
        self._after_cr = False
        self._started = False
        # Inside an oversize event: drop lines up to the blank one that ends it.
        self._skipping = False
        self._skipped_line = 0  # bytes of the current line while skipping

    @property
    def buffered(self) -> int:
        """Bytes of the current event held: never more than ``max_event_bytes``."""
        return len(self._line) + len(self._data)

    def feed(self, chunk: bytes) -> list[SseEvent | OversizeEvent]:
        out: list[SseEvent | OversizeEvent] = []
        if not self._started and chunk:
            # A byte order mark may open the stream (possibly split over chunks: rare enough
            # that only a whole one at the start is taken off).
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        start = 0
        for match in _BREAK.finditer(chunk):
            self._piece(chunk[start : match.start()], True, out)
            start = match.end()
        if start < len(chunk):
            self._piece(chunk[start:], False, out)
        return out

    # -- lines -----------------------------------------------------------------------------------

    def _piece(self, piece: bytes, complete: bool, out: list[SseEvent | OversizeEvent]) -> None:
        """Part of a line; ``complete`` when the line ends with it."""
        if self._skipping:
            self._skip(piece, complete)
            return
        if len(self._data) + len(self._line) + len(piece) > self.max_event_bytes:
            self._start_skipping(piece, out)
            self._skip(b"", complete)
            return
        if not complete:
            self._line += piece
            return
        if self._line:
            self._line += piece
            line = bytes(self._line)
            self._line.clear()
        else:
            line = piece
        self._field(line, out)

    def _field(self, line: bytes, out: list[SseEvent | OversizeEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line.startswith(b":"):
            return  # a comment (servers send them as keep-alives)
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            if self._has_data:
                self._data += b"\n"
            self._data += value
            self._has_data = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self.last_event_id = value.decode("utf-8", "replace")
        # ``retry`` and unknown fields are ignored, as the format says.

    def _dispatch(self, out: list[SseEvent | OversizeEvent]) -> None:
        if self._has_data:
            out.append(SseEvent(self._event or "message", bytes(self._data), self.last_event_id))
        self._data.clear()
        self._has_data = False
        self._event = ""

    # -- over the cap ----------------------------------------------------------------------------

    def _start_skipping(self, piece: bytes, out: list[SseEvent | OversizeEvent]) -> None:
        line = bytes(self._line) + piece
        if line.startswith(b"data:"):
            line = line[6:] if line.startswith(b"data: ") else line[5:]
            if self._has_data:
                line = b"\n" + line
        else:
            line = b""
        head = bytes(self._data[:OVERSIZE_HEAD_BYTES]) + line[:OVERSIZE_HEAD_BYTES]
        # Reported now, not when the event ends: it may never end.
        out.append(OversizeEvent(head[:OVERSIZE_HEAD_BYTES]))
        self._line.clear()
        self._data.clear()
        self._has_data = False
        self._event = ""
        self._skipping = True
        self._skipped_line = len(line) or 1  # the cut line is not blank

    def _skip(self, piece: bytes, complete: bool) -> None:
        self._skipped_line += len(piece)
        if not complete:
            return
        if self._skipped_line == 0:  # the blank line that ends the dropped event
            self._skipping = False
        self._skipped_line = 0
