"""The database: where an operation's statements run, on SQLite or Postgres, through the pool.

An operation (:mod:`.operations`) is a generator: it yields :class:`Stmt` values and is sent each
one's result, so it holds no I/O and one text of SQL serves both backends. Here it is driven:

- **SQLite**: the whole generator runs on the event loop's thread on a pooled ``sqlite3``
  connection: its statements take tens of microseconds, less than a hop to a worker thread and
  the GIL hand-off back (measured in docs/PERFORMANCE.md). Writes start with
  ``BEGIN IMMEDIATE`` (they wait on ``busy_timeout`` instead of failing to upgrade a lock).
- **Postgres**: statements go to an asyncpg connection (prepared and cached by asyncpg); writes
  run in a transaction, and yield :data:`GRAPH_LOCK` before a cycle check so that two racing
  writers cannot close a cycle between them (SQLite serializes writers already).

SQL is written with ``?`` placeholders and ``{agg}`` for the one function the backends spell
differently; :class:`Dialect` rewrites it once per text. A write is committed before
:meth:`Database.run` returns, so an acknowledged write is on disk (SQLite: WAL, NORMAL — it
survives the process being killed).
"""

# ruff: noqa: S608 -- SQL text here is built from constants only; every value is a parameter.
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from roundhouse.bindery.backend.checkpoint import WAL_SIZE_LIMIT, Checkpointer
from roundhouse.bindery.backend.errors import BinderyError, Conflict, Unavailable
from roundhouse.bindery.backend.group import (
    GroupCommit,
    Item,
    Outcome,
    rolled_back_on_error,
    run_in_transaction,
)
from roundhouse.bindery.backend.migrations import MIGRATIONS, PG_MIGRATION_LOCK, VERSION_TABLE
from roundhouse.bindery.backend.pool import Pool, PoolLimits

__all__ = ["GRAPH_LOCK", "Database", "Op", "Stmt", "parse_target"]

log = logging.getLogger("roundhouse.bindery")
T = TypeVar("T")

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA cache_size = -65536",
    "PRAGMA mmap_size = 268435456",
    # Checkpoints run on a thread of their own (see checkpoint.py), never inside a commit.
    "PRAGMA wal_autocheckpoint = 0",
    f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}",
)
PG_CONNECT_TIMEOUT_S = 5.0
#: How long the checkpointer waits for writes to be held back before it gives up on a pass.
HOLD_WRITES_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Stmt:
    """One statement: ``fetch`` says what the operation is sent back.

    ``all`` rows, ``one`` row or None, ``val`` the first column of the first row or None,
    ``exec`` None, ``many`` (``args`` is a list of tuples) None. ``only`` names the one backend
    that runs it (the other sends None).
    """

    sql: str
    args: Any = ()
    fetch: Literal["all", "one", "val", "exec", "many"] = "all"
    only: str | None = None


Op = Generator[Stmt, Any, T]

#: Serializes changes to the task graph on Postgres (parents, dependencies).
GRAPH_LOCK = Stmt(
    f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK + 1})", fetch="exec", only="postgresql"
)


class Dialect:
    def __init__(self, name: str) -> None:
        self.name = name
        agg = (
            "group_concat(d.depends_on)"
            if name == "sqlite"
            else "string_agg(d.depends_on::text, ',')"
        )
        self._fragments = {"agg": agg}
        self._cache: dict[str, str] = {}

    def sql(self, text: str) -> str:
        done = self._cache.get(text)
        if done is None:
            done = text.format(**self._fragments) if "{" in text else text
            if self.name == "postgresql":
                parts = done.split("?")
                done = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
            self._cache[text] = done
        return done


def parse_target(db: str) -> tuple[str, str]:
    """``(dialect, where)`` for ``--db``: a file path, ``sqlite:///PATH`` or a Postgres URL."""
    if db.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        return "postgresql", "postgresql://" + db.split("://", 1)[1]
    if db.startswith("sqlite:///"):
        db = db.removeprefix("sqlite:///")
    elif "://" in db:
        raise ValueError("the database must be a file path, sqlite:///PATH or postgresql://...")
    if not db or db == ":memory:" or db.startswith("file:"):
        raise ValueError("the database must be a file (several connections share it)")
    return "sqlite", db


def prepare_sqlite_file(path: Path) -> None:
    """Create the file 0600 (and its directory 0700 if new); an existing file is tightened."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)


def _open_sqlite(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=512
    )
    for pragma in SQLITE_PRAGMAS:
        connection.execute(pragma)
    return connection


def _sqlite_one(connection: sqlite3.Connection, stmt: Stmt, sql: str) -> Any:
    if stmt.fetch == "many":
        connection.executemany(sql, stmt.args)
        return None
    cursor = connection.execute(sql, stmt.args)
    if stmt.fetch == "all":
        return cursor.fetchall()
    if stmt.fetch == "exec":
        return None
    row = cursor.fetchone()
    if stmt.fetch == "one":
        return row
    return None if row is None else row[0]


class _SqliteConnector:
    def __init__(self, path: str, executor: ThreadPoolExecutor) -> None:
        self.path = path
        self.executor = executor

    async def connect(self) -> sqlite3.Connection:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, _open_sqlite, self.path)
        except sqlite3.Error as exc:
            raise ConnectionError("the database file cannot be opened") from exc

    async def close(self, connection: sqlite3.Connection) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, connection.close)


class _PostgresConnector:
    def __init__(self, url: str) -> None:
        self.url = url

    async def connect(self) -> Any:
        import asyncpg

        try:
            return await asyncpg.connect(self.url, timeout=PG_CONNECT_TIMEOUT_S)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConnectionError("the database refused the connection") from exc

    async def close(self, connection: Any) -> None:
        try:
            await asyncio.wait_for(connection.close(), PG_CONNECT_TIMEOUT_S)
        except Exception:
            connection.terminate()


class Database:
    """The pool and the driver of operations; ``open`` migrates, ``close`` drains."""

    def __init__(self, db: str, limits: PoolLimits | None = None) -> None:
        self.dialect_name, self._where = parse_target(db)
        self.dialect = Dialect(self.dialect_name)
        self.limits = limits or PoolLimits()
        self._slow_s = self.limits.slow_query_ms / 1000
        self._executor: ThreadPoolExecutor | None = None
        self._writers: asyncio.Lock | None = None
        self._checkpointer: Checkpointer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the serving loop (SQLite)
        self._group: GroupCommit | None = None
        #: SQLite statements run on the event loop's thread (see ``_run_sqlite``).
        self._on_loop = self.dialect_name == "sqlite"
        connector: Any
        if self.dialect_name == "sqlite":
            self._executor = ThreadPoolExecutor(
                max_workers=self.limits.max_size, thread_name_prefix="bindery-sqlite"
            )
            connector = _SqliteConnector(self._where, self._executor)
            self._writers = asyncio.Lock()
            self._group = GroupCommit(self._write_group)
        else:
            connector = _PostgresConnector(self._where)
        self.pool: Pool[Any] = Pool(connector, self.limits)

    async def open(self) -> None:
        if self.dialect_name == "sqlite":
            prepare_sqlite_file(Path(self._where))
        try:
            await self.pool.open()
        except ConnectionError as exc:
            await self.close()
            raise Unavailable("the database cannot be opened") from exc
        if self.dialect_name == "sqlite":
            self._loop = asyncio.get_running_loop()
            self._checkpointer = Checkpointer(self._where, _open_sqlite, self._hold_writes)
            self._checkpointer.start()
        await self.migrate()

    async def migrate(self, *, up_to: int | None = None) -> None:
        """Bring the schema to ``up_to`` (head by default); tests stop short to test upgrades."""
        await self.run(_migrate(self.dialect_name, up_to), write=True)

    async def run(self, op: Op[T], *, write: bool) -> T:
        """Run ``op`` on a pooled connection; a write is committed when this returns."""
        if write and self._group is not None:
            # SQLite: writes that arrive together share a transaction (group.py).
            result: T = await self._group.submit(op)
            return result
        return await self._run(op, write=write)

    async def _write_group(self, group: list[Item]) -> None:
        assert self._writers is not None
        # One SQLite writer at a time in this process: racing BEGIN IMMEDIATEs would wait in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms. The lock is also how
        # the checkpointer holds writes back.
        async with self._writers, self.pool.lease() as lease:
            # Callers cancelled while the group waited for the lock or a connection drop out.
            group = [item for item in group if not item[1].done()]
            if not group:
                return
            try:
                outcomes = run_in_transaction(lease.connection, group, self._drive_op)
            except BinderyError:
                raise
            except sqlite3.IntegrityError:
                raise Conflict("the change conflicts with a concurrent one") from None
            except sqlite3.OperationalError as exc:
                log.warning("sqlite: %s", exc)
                lease.broken = "locked" not in str(exc)
                raise Unavailable("the database is busy; try again") from None
        for (_, future), outcome in zip(group, outcomes, strict=True):
            self.pool.record_queries(outcome.count, outcome.slow)
            if future.done():
                continue
            if outcome.error is None:
                future.set_result(outcome.value)
            elif isinstance(outcome.error, sqlite3.IntegrityError):
                future.set_exception(Conflict("the change conflicts with a concurrent one"))
            elif isinstance(outcome.error, sqlite3.Error):
                log.warning("sqlite: %s", outcome.error)
                future.set_exception(Unavailable("the database is busy; try again"))
            else:
                future.set_exception(outcome.error)

    def _drive_op(self, connection: sqlite3.Connection, op: Op[Any]) -> Outcome:
        """One write's statements inside a group's transaction; its error kept, not raised."""
        outcome = Outcome()
        try:
            self._statements(connection, op, outcome)
        except Exception as exc:
            outcome.error = exc
        return outcome

    def _statements(self, connection: sqlite3.Connection, op: Op[Any], outcome: Outcome) -> None:
        """Run ``op``'s statements in turn, each answer sent back in; its result, the count and
        the slow ones go to ``outcome`` (the counts also when a statement raises)."""
        sql = self.dialect.sql
        value: Any = None
        try:
            while True:
                stmt = op.send(value)
                if stmt.only is not None and stmt.only != "sqlite":
                    value = None
                    continue
                started = time.perf_counter()
                value = _sqlite_one(connection, stmt, sql(stmt.sql))
                outcome.count += 1
                outcome.slow += time.perf_counter() - started > self._slow_s
        except StopIteration as stop:
            outcome.value = stop.value

    async def _run(self, op: Op[T], *, write: bool) -> T:
        async with self.pool.lease() as lease:
            try:
                if self.dialect_name == "sqlite":
                    result, count, slow = await self._run_sqlite(lease.connection, op, write)
                else:
                    result, count, slow = await self._run_postgres(lease.connection, op, write)
            except BinderyError:
                raise
            except sqlite3.IntegrityError:
                raise Conflict("the change conflicts with a concurrent one") from None
            except sqlite3.OperationalError as exc:
                log.warning("sqlite: %s", exc)
                lease.broken = "locked" not in str(exc)
                raise Unavailable("the database is busy; try again") from None
            except Exception as exc:
                raise self._postgres_error(exc, lease) from None
        self.pool.record_queries(count, slow)
        return result

    async def _run_sqlite(
        self, connection: sqlite3.Connection, op: Op[T], write: bool
    ) -> tuple[T, int, int]:
        # Statements run on the loop thread: writes go one at a time already (``_writers``)
        # and take tens of microseconds in WAL with synchronous=NORMAL; nobody else in this
        # process holds the write lock, so nothing waits in the busy handler; reads are indexed
        # and bounded by their LIMIT. A thread hop and the GIL hand-off back cost more than the
        # statement (creates: ~1,100/s through a worker thread at c16, p50 13 ms, against
        # 0.7 ms at c1; 2,550/s and p99 14 ms on the loop).
        if self._on_loop:
            return self._drive_sqlite(connection, op, write)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._drive_sqlite, connection, op, write)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread still holds the connection: it goes back only once the thread is done.
            await asyncio.wait([future])
            raise

    def _drive_sqlite(
        self, connection: sqlite3.Connection, op: Op[T], write: bool
    ) -> tuple[T, int, int]:
        outcome = Outcome()
        if write:
            connection.execute("BEGIN IMMEDIATE")
        with rolled_back_on_error(connection):
            self._statements(connection, op, outcome)
            if write:
                connection.execute("COMMIT")
        result: T = outcome.value
        return result, outcome.count, outcome.slow

    async def _run_postgres(self, connection: Any, op: Op[T], write: bool) -> tuple[T, int, int]:
        count = slow = 0
        sql = self.dialect.sql
        transaction = connection.transaction() if write else None
        if transaction is not None:
            await transaction.start()
        try:
            value: Any = None
            try:
                while True:
                    stmt = op.send(value)
                    if stmt.only is not None and stmt.only != "postgresql":
                        value = None
                        continue
                    started = time.perf_counter()
                    value = await _postgres_one(connection, stmt, sql(stmt.sql))
                    count += 1
                    slow += time.perf_counter() - started > self._slow_s
            except StopIteration as stop:
                result: T = stop.value
            if transaction is not None:
                await transaction.commit()
        except BaseException:
            if transaction is not None and not connection.is_closed():
                try:
                    await transaction.rollback()
                except Exception:
                    connection.terminate()
            raise
        return result, count, slow

    def _postgres_error(self, exc: Exception, lease: Any) -> BinderyError | Exception:
        """Foreign errors mapped in one place: a conflict, a busy or lost database (503; the
        connection is not reused), or a fault of ours, which stays itself (a logged 500)."""
        import asyncpg

        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return Conflict("the change conflicts with a concurrent one")
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith("40"):  # serialization failure, deadlock
            return Unavailable("the database is busy; try again")
        lease.broken = True
        lost = isinstance(
            exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError
        )
        # 08: connection exception, 53: insufficient resources, 57: operator intervention.
        if lost or state[:2] in ("08", "53", "57"):
            return Unavailable("the database did not answer")
        return exc

    @contextlib.contextmanager
    def _hold_writes(self) -> Iterator[None]:
        """On another thread: hold the loop's writer lock, so no write starts until left."""
        assert self._writers is not None and self._loop is not None
        writers = self._writers
        loop = self._loop
        held = asyncio.run_coroutine_threadsafe(writers.acquire(), loop)
        try:
            held.result(HOLD_WRITES_TIMEOUT_S)
        except BaseException:
            held.cancel()
            # Acquired after all (the cancel came too late): let go on the loop.
            held.add_done_callback(
                lambda f: (
                    f.cancelled() or f.exception() or loop.call_soon_threadsafe(writers.release)
                )
            )
            raise
        try:
            yield
        finally:
            loop.call_soon_threadsafe(writers.release)

    async def ping(self) -> None:
        await self.run(_ping(), write=False)

    async def close(self) -> None:
        if self._group is not None:
            await self._group.close()
        await self.pool.close()
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._checkpointer.close
            )
        if self._executor is not None:
            self._executor.shutdown(wait=True)


async def _postgres_one(connection: Any, stmt: Stmt, sql: str) -> Any:
    fetch: Callable[..., Any]
    if stmt.fetch == "many":
        await connection.executemany(sql, stmt.args)
        return None
    if stmt.fetch == "all":
        fetch = connection.fetch
    elif stmt.fetch == "one":
        fetch = connection.fetchrow
    elif stmt.fetch == "val":
        fetch = connection.fetchval
    else:
        await connection.execute(sql, *stmt.args)
        return None
    return await fetch(sql, *stmt.args)


def _ping() -> Op[None]:
    yield Stmt("SELECT 1", fetch="val")


def _migrate(dialect: str, up_to: int | None) -> Op[None]:
    yield Stmt(
        f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})", fetch="exec", only="postgresql"
    )
    yield Stmt(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)", fetch="exec"
    )
    current = yield Stmt(f"SELECT max(version) FROM {VERSION_TABLE}", fetch="val")
    current = current or 0
    newest = MIGRATIONS[-1].version
    if current > newest:
        raise Unavailable(
            f"the database schema is version {current}, newer than this Bindery ({newest})"
        )
    for migration in MIGRATIONS:
        if migration.version <= current or (up_to is not None and migration.version > up_to):
            continue
        for statement in migration.statements(dialect):
            yield Stmt(statement, fetch="exec")
        yield Stmt(f"DELETE FROM {VERSION_TABLE}", fetch="exec")
        yield Stmt(
            f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", (migration.version,), "exec"
        )
