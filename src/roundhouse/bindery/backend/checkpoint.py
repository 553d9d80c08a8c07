"""WAL checkpoints on a thread of their own, so that they never pause the event loop.

SQLite statements run on the backend's event-loop thread (see :mod:`.database`). With SQLite's
automatic checkpoint, the connection whose commit takes the WAL past 1,000 pages copies the
pages back into the database file and fsyncs it, inside that commit: 5-8 ms during which the
backend answers nothing, several times a second under a stream of creates (each commit adds
~6 pages). So the serving connections set ``wal_autocheckpoint=0``, and a :class:`Checkpointer`
runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection and a thread of its own; the sqlite3
module releases the GIL while SQLite works, so the loop keeps serving meanwhile.

- A PASSIVE checkpoint neither waits for nor blocks readers and writers; it copies what no
  reader still needs. Only when it has copied *everything* does the next writer start the WAL
  over from its beginning (``journal_size_limit``, set on every connection, then cuts the file
  back to :data:`WAL_SIZE_LIMIT`). Under a steady stream of writes some always land during the
  checkpoint, so the WAL would never start over and would grow without end.
- So once the WAL is longer than :data:`CATCH_UP_FRAMES` frames at a checkpoint, the thread
  asks the loop to hold writes back (``hold_writes``: the loop takes its writer lock; reads go
  on) and checkpoints once more: that pass copies only what arrived during the first one, and
  finishes, so the next writer starts the WAL over. Writes wait a few milliseconds, once per
  ~16 MiB of WAL, instead of everything waiting inside every 1,000th page's commit.
- It runs every :data:`INTERVAL_S` while the WAL changes, and not at all while it does not
  (the thread then only looks at the file's size and time).
- Durability does not depend on it: with ``synchronous=NORMAL`` a commit is in the WAL before
  it is answered, and survives the process being killed; a checkpoint only moves pages on.
- On close it runs one ``TRUNCATE`` checkpoint, which empties the WAL when nobody is serving.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Final

__all__ = ["INTERVAL_S", "WAL_SIZE_LIMIT", "Checkpointer"]

log = logging.getLogger("roundhouse.bindery")

#: How often the thread looks at the WAL, and so the longest it holds writes unchecked.
INTERVAL_S: Final = 0.2
#: What a WAL file is cut back to after a restart (``PRAGMA journal_size_limit``), in bytes.
WAL_SIZE_LIMIT: Final = 16 * 1024 * 1024
#: WAL length (frames since it last started over) past which writes are held back for a pass.
CATCH_UP_FRAMES: Final = 4096
#: How long :meth:`Checkpointer.close` waits for a checkpoint under way.
CLOSE_TIMEOUT_S: Final = 10.0


class Checkpointer:
    """A thread that checkpoints the WAL of the database at ``path`` while it changes.

    ``open_connection`` opens a connection with the serving connections' settings; the thread
    opens and closes its own. ``hold_writes()`` is entered on the thread and returns once no
    write can start until it is left. ``checkpoints`` and ``catch_ups`` count the passes done.
    """

    def __init__(
        self,
        path: str,
        open_connection: Callable[[str], sqlite3.Connection],
        hold_writes: Callable[[], AbstractContextManager[None]] | None = None,
        interval: float = INTERVAL_S,
    ) -> None:
        self._path = path
        self._wal = path + "-wal"
        self._open = open_connection
        self._hold_writes = hold_writes or nullcontext
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        self.catch_ups = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the checkpointer runs once")
        self._thread = threading.Thread(target=self._run, name="bindery-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread after a last, truncating checkpoint (bounded; blocks the caller)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        try:
            connection = self._open(self._path)
        except sqlite3.Error as exc:
            log.warning("sqlite checkpointer: cannot open the database: %s", exc)
            return
        try:
            seen = self._stamp()
            while not self._stop.wait(self._interval):
                stamp = self._stamp()
                if stamp != seen:
                    if self._checkpoint(connection, "PASSIVE") > CATCH_UP_FRAMES:
                        self._catch_up(connection)
                    seen = stamp
            self._checkpoint(connection, "TRUNCATE")
        finally:
            connection.close()

    def _stamp(self) -> tuple[int, int]:
        """The WAL's size and modification time: when neither moved, nothing was written."""
        try:
            status = os.stat(self._wal)
        except OSError:
            return (0, 0)
        return (status.st_size, status.st_mtime_ns)

    def _catch_up(self, connection: sqlite3.Connection) -> None:
        try:
            with self._hold_writes():
                self._checkpoint(connection, "PASSIVE")
        except Exception as exc:  # the loop is closing, or did not answer in time
            log.warning("sqlite checkpoint: writes could not be held back: %r", exc)
            return
        self.catch_ups += 1

    def _checkpoint(self, connection: sqlite3.Connection, mode: str) -> int:
        """Run one checkpoint; the frames in the WAL since it last started over (its length)."""
        try:
            _, frames, _ = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            # Busy or failing storage: the next round tries again; serving is not affected.
            log.warning("sqlite checkpoint (%s): %s", mode.lower(), exc)
            return 0
        self.checkpoints += 1
        return max(0, int(frames))
