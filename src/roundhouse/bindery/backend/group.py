"""Group commit: SQLite writes that arrive together share one transaction.

A write on SQLite costs ~60 µs of CPU on the loop thread, and ~45 of them are the ``COMMIT``
(appending every page it touched to the WAL: ~6 pages per create). Writes that are ready in the
same turn of the event loop (requests whose bodies arrived together) are run as one group: one
``BEGIN IMMEDIATE``, each write in a ``SAVEPOINT`` of its own, one ``COMMIT`` — ~25 µs per
create in groups of 16, and pages shared by the group (a table's last leaf, its indexes) go to
the WAL once.

Each caller still gets its own result or its own error: a write that fails (not found, a
conflict, a constraint, a fault of ours) is rolled back to its savepoint and fails alone; the
others commit. Results are handed out only after the ``COMMIT``, so an acknowledged write is
in the WAL. What fails the whole group is the database itself failing (an I/O error, a full
disk, the ``COMMIT``): then every write of the group gets that error and none is committed.

The group waits for nothing: the first write of a turn schedules the flush as a task, which
runs after the tasks already ready in that turn, so a lone write costs one task switch more
and no timer. A caller cancelled before its group runs is left out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MAX_GROUP", "GroupCommit", "Item", "Outcome", "run_in_transaction"]

#: SQLite result codes (primary) after which a transaction is rolled back whole: BUSY, LOCKED,
#: NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_FATAL_CODES: Final = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})
#: The most writes in one transaction (a bound on how long one group holds the loop).
MAX_GROUP: Final = 64


@dataclass(slots=True)
class Outcome:
    """What one write of a group came to: ``value`` or ``error``, statements run, slow ones."""

    value: Any = None
    error: BaseException | None = None
    count: int = 0
    slow: int = 0


#: One write waiting: its operation (a generator of statements) and its caller's future.
Item = tuple[Generator[Any, Any, Any], "asyncio.Future[Any]"]
#: Runs one operation's statements on a connection (no BEGIN or COMMIT); its outcome.
Drive = Callable[[sqlite3.Connection, Generator[Any, Any, Any]], Outcome]


class GroupCommit:
    """The queue of writes and the task that runs them in groups.

    ``run_group(items)`` leases a connection, runs the items with :func:`run_in_transaction`
    and sets each future; if it raises, every future of the group gets that error. The queue
    is owned here, the connection and its errors by
    :class:`~roundhouse.bindery.backend.database.Database`.
    """

    def __init__(self, run_group: Callable[[list[Item]], Awaitable[None]]) -> None:
        self._run_group = run_group
        self._queue: list[Item] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, op: Generator[Any, Any, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="bindery-group-commit")
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                group = [item for item in self._queue[:MAX_GROUP] if not item[1].done()]
                del self._queue[:MAX_GROUP]
                if not group:
                    continue
                try:
                    await self._run_group(group)
                except Exception as exc:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                except BaseException:
                    for _, future in group:
                        future.cancel()
                    raise
        finally:
            self._flusher = None
            for op, future in self._queue:  # only left by a cancelled flusher (shutdown)
                op.close()
                if not future.done():
                    future.cancel()
            self._queue.clear()

    async def close(self) -> None:
        """Wait for the group under way (shutdown: new writes are refused by the pool)."""
        if self._flusher is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._flusher)


def run_in_transaction(
    connection: sqlite3.Connection, group: list[Item], drive: Drive
) -> list[Outcome]:
    """Run ``group`` in one transaction, each op in a savepoint when there are several.

    Returns the outcomes once committed; raises (after rolling back) when the transaction
    itself failed: a database error outside an op's own, or the ``COMMIT``.
    """
    outcomes: list[Outcome] = []
    alone = len(group) == 1
    connection.execute("BEGIN IMMEDIATE")
    with rolled_back_on_error(connection):
        for op, _ in group:
            if alone:
                outcome = drive(connection, op)
                if outcome.error is not None:
                    raise outcome.error
                outcomes.append(outcome)
                continue
            connection.execute("SAVEPOINT one_write")
            outcome = drive(connection, op)
            if outcome.error is not None:
                if not connection.in_transaction or _fails_the_group(outcome.error):
                    raise outcome.error
                connection.execute("ROLLBACK TO one_write")
            connection.execute("RELEASE one_write")
            outcomes.append(outcome)
        connection.execute("COMMIT")
    return outcomes


@contextlib.contextmanager
def rolled_back_on_error(connection: sqlite3.Connection) -> Iterator[None]:
    """Whatever leaves the block by raising leaves no transaction open behind it."""
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def _fails_the_group(error: BaseException) -> bool:
    """Whether an op's error ends the whole transaction: the database failing (I/O, a full
    disk, busy, corrupt: SQLite's advice is to roll back) does; an op's own error (an answer,
    a constraint, a statement SQLite refused) ends only that op."""
    if not isinstance(error, sqlite3.Error) or isinstance(error, sqlite3.IntegrityError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    return code is None or code & 0xFF in _FATAL_CODES
