"""Where an instance's stderr goes: a ring buffer, a size-capped rotating file, the event bus."""

from __future__ import annotations

import asyncio
import collections
import logging
import logging.handlers
import time
from dataclasses import dataclass
from pathlib import Path

from roundhouse.events import EventBus

__all__ = ["MAX_LOG_LINE", "LogLine", "StderrSink"]

#: Longer stderr lines are cut here: a server that dumps a megabyte without a newline must not
#: hold that much in the ring buffer per line.
MAX_LOG_LINE = 8192
_READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class LogLine:
    ts: float
    instance: str
    line: str

    def to_dict(self) -> dict[str, object]:
        return {"ts": self.ts, "instance": self.instance, "line": self.line}


class StderrSink:
    """Keeps the last ``ring_lines`` lines in memory and every line in a rotating file."""

    def __init__(
        self,
        *,
        server: str,
        instance: str,
        bus: EventBus,
        log_file: Path,
        ring_lines: int,
        max_bytes: int,
        backups: int,
    ) -> None:
        self.server = server
        self.instance = instance
        self._bus = bus
        self.ring: collections.deque[LogLine] = collections.deque(maxlen=ring_lines)
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The standard library's rotation, driven directly (no Logger object per instance,
        # which would live forever in logging's registry).
        self._handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self._handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))

    def add(self, text: str) -> None:
        entry = LogLine(time.time(), self.instance, text[:MAX_LOG_LINE])
        self.ring.append(entry)
        record = logging.makeLogRecord({"msg": entry.line, "created": entry.ts})
        self._handler.handle(record)
        self._bus.publish(
            "instance.log", server=self.server, instance=self.instance, line=entry.line, at=entry.ts
        )

    def tail(self, lines: int) -> list[LogLine]:
        if lines <= 0:
            return []
        return list(self.ring)[-lines:]

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Read ``stream`` to EOF, line by line, cutting over-long lines instead of failing."""
        pending = b""
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self.add(raw.rstrip(b"\r").decode("utf-8", "replace"))
            if len(pending) > MAX_LOG_LINE:
                self.add(pending.decode("utf-8", "replace"))
                pending = b""
        if pending:
            self.add(pending.decode("utf-8", "replace"))

    def close(self) -> None:
        self._handler.close()
