"""The registry on SQLite, on the standard library's ``sqlite3``: no SQLAlchemy at run time.

**Where the statements run.** One connection, owned by one worker thread (a single-thread
executor); each method hands that thread one short transaction and awaits it. A read would be
cheap on any thread (~0.04 ms), but a commit with ``synchronous=FULL`` waits for an fsync: on
this machine's disk 0.5 ms typical, 5 ms at the 95th percentile, 8 ms at worst (a bare
``sqlite3`` loop of 300 upserts), far more on a busy or slow disk. Writes come with every
instance transition; on the event loop's thread they would hold up the MCP traffic it serves,
while in the worker ``sqlite3`` releases the GIL for the fsync: during 200 back-to-back
``save_instance`` calls a 1 ms timer on the loop was late by 0.2 ms typical, 0.9 ms at worst.
The hop costs ~0.1 ms a call (``get_instance``, decoding included: 0.14 ms), paid only by the
control plane. One connection serializes the calls, as SQLite does anyway for writes (one
writer at a time), so racing callers in the gateway take turns instead of waiting on
``busy_timeout``; another process opening the same file still meets SQLite's locks and
``busy_timeout``.

**Transactions.** A write runs in ``BEGIN IMMEDIATE`` ... ``COMMIT`` inside the thread, rolled
back there on any error, so the connection is never left in a transaction, even when the
awaiting task is cancelled (the thread finishes what it began). A read is one statement, which
SQLite runs as its own transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

from roundhouse.errors import Conflict, InvalidInput, NotFound, StoreError
from roundhouse.spec import ServerSpec
from roundhouse.store import urls
from roundhouse.store.records import InstanceRecord, ServerRecord
from roundhouse.store.rows import (
    INSTANCE_COLUMNS,
    SERVER_COLUMNS,
    check_desired,
    dump_spec,
    instance_from_row,
    instance_values,
    no_server,
    server_from_row,
)
from roundhouse.store.sqlite_schema import bring_to_head, connect, prepare_sqlite_file
from roundhouse.store.store import Store

__all__ = ["SQLiteStore"]

T = TypeVar("T")
Row = dict[str, Any]

# Statements are built from the column tuples in rows.py, never from input: values are bound.
_SERVER = ", ".join(SERVER_COLUMNS)
_INSTANCE = ", ".join(INSTANCE_COLUMNS)
_SELECT_SERVERS = f"SELECT {_SERVER} FROM servers"  # noqa: S608
_SELECT_INSTANCES = f"SELECT {_INSTANCE} FROM instances"  # noqa: S608
_INSTANCE_ORDER = " ORDER BY server, ordinal, id"
_INSERT_SERVER = (
    f"INSERT INTO servers ({_SERVER}) VALUES "  # noqa: S608
    "(:slug, :spec, :desired, 1, :now, :now)"
)
#: The stored ``desired_instances`` moved into the new spec's range :low..:high.
_CLAMPED = (
    "CASE WHEN servers.desired_instances < :low THEN :low "
    "WHEN servers.desired_instances > :high THEN :high ELSE servers.desired_instances END"
)
_UPSERT_SERVER = (
    f"{_INSERT_SERVER} ON CONFLICT (slug) DO UPDATE SET spec = excluded.spec, "
    f"desired_instances = COALESCE(:given, {_CLAMPED}), "
    f"generation = servers.generation + 1, updated_at = :now RETURNING {_SERVER}"
)
_REPLACE_SERVER = (
    f"UPDATE servers SET spec = :spec, desired_instances = {_CLAMPED}, "  # noqa: S608
    f"generation = generation + 1, updated_at = :now WHERE slug = :slug RETURNING {_SERVER}"
)
_UPDATE_SERVER = (
    "UPDATE servers SET spec = :spec, desired_instances = :desired, "  # noqa: S608
    f"generation = generation + 1, updated_at = :now WHERE slug = :slug RETURNING {_SERVER}"
)
_SAVE_INSTANCE = (
    f"INSERT INTO instances ({_INSTANCE}) "  # noqa: S608
    f"VALUES ({', '.join(f':{name}' for name in INSTANCE_COLUMNS)}) ON CONFLICT (id) DO UPDATE "
    f"SET {', '.join(f'{name} = excluded.{name}' for name in INSTANCE_COLUMNS if name != 'id')}"
)


class SQLiteStore(Store):
    """The registry in a SQLite file; see :class:`~roundhouse.store.store.Store` for the API."""

    dialect = "sqlite"
    _foreign_errors = (sqlite3.Error,)

    def __init__(self, database: str) -> None:
        self._database = database
        self.location = urls.RegistryURL("sqlite", database).location
        self._connection: sqlite3.Connection | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roundhouse-registry")
        self._closed = False

    @classmethod
    async def _open(cls, url: str, *, schema: str | None) -> Self:
        if schema is not None:
            raise InvalidInput("a schema applies to Postgres only", field="schema")
        parsed = urls.parse(url)
        if parsed.database is None:
            raise InvalidInput("this store opens sqlite:///PATH URLs only", field="database_url")
        store = cls(parsed.database)
        try:
            await store._run(store._connect)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._run(self._disconnect)
        finally:
            self._closed = True
            # Not waited for: the close above was the thread's last piece of work.
            self._worker.shutdown(wait=False)

    # -- servers ---------------------------------------------------------------------------

    async def create_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        desired = check_desired(spec, desired_instances)
        now = time.time()
        values = {"slug": spec.slug, "spec": dump_spec(spec), "desired": desired, "now": now}

        def insert(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(_INSERT_SERVER, values)
            except sqlite3.IntegrityError:
                raise Conflict(f"a server named '{spec.slug}' already exists") from None

        await self._write(insert)
        return ServerRecord(spec, desired, 1, now, now)

    async def upsert_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        given = None if desired_instances is None else check_desired(spec, desired_instances)
        values = {
            "slug": spec.slug,
            "spec": dump_spec(spec),
            "desired": spec.instances.min if given is None else given,
            "given": given,
            "low": spec.instances.min,
            "high": spec.instances.max,
            "now": time.time(),
        }
        [row] = await self._write(lambda connection: _rows(connection, _UPSERT_SERVER, values))
        return server_from_row(row)

    async def replace_server(self, spec: ServerSpec) -> ServerRecord:
        values = {
            "slug": spec.slug,
            "spec": dump_spec(spec),
            "low": spec.instances.min,
            "high": spec.instances.max,
            "now": time.time(),
        }
        rows = await self._write(lambda connection: _rows(connection, _REPLACE_SERVER, values))
        if not rows:
            raise no_server(spec.slug)
        return server_from_row(rows[0])

    async def get_server(self, slug: str) -> ServerRecord:
        rows = await self._read(f"{_SELECT_SERVERS} WHERE slug = ?", (slug,))
        if not rows:
            raise no_server(slug)
        return server_from_row(rows[0])

    async def list_servers(self) -> list[ServerRecord]:
        return [
            server_from_row(row) for row in await self._read(f"{_SELECT_SERVERS} ORDER BY slug")
        ]

    async def delete_server(self, slug: str) -> None:
        def delete(connection: sqlite3.Connection) -> int:
            return connection.execute("DELETE FROM servers WHERE slug = ?", (slug,)).rowcount

        if await self._write(delete) == 0:
            raise no_server(slug)

    async def set_desired_instances(self, slug: str, n: int) -> ServerRecord:
        def scale(connection: sqlite3.Connection) -> Row:
            row = _locked_server(connection, slug)
            check_desired(server_from_row(row).spec, n)
            return _update_server(connection, slug, row["spec"], n)

        return server_from_row(await self._write(scale))

    async def set_enabled(self, slug: str, enabled: bool) -> ServerRecord:
        def enable(connection: sqlite3.Connection) -> Row:
            row = _locked_server(connection, slug)
            spec = server_from_row(row).spec.model_copy(update={"enabled": enabled})
            return _update_server(connection, slug, dump_spec(spec), row["desired_instances"])

        return server_from_row(await self._write(enable))

    # -- instances -------------------------------------------------------------------------

    async def save_instance(self, rec: InstanceRecord) -> None:
        rec.updated_at = time.time()
        values = instance_values(rec)

        def save(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(_SAVE_INSTANCE, values)
            except sqlite3.IntegrityError:
                raise no_server(rec.server) from None

        await self._write(save)

    async def get_instance(self, id: str) -> InstanceRecord:
        rows = await self._read(f"{_SELECT_INSTANCES} WHERE id = ?", (id,))
        if not rows:
            raise NotFound(f"no instance with id '{id}'")
        return instance_from_row(rows[0])

    async def list_instances(self, server: str | None = None) -> list[InstanceRecord]:
        if server is None:
            rows = await self._read(_SELECT_INSTANCES + _INSTANCE_ORDER)
        else:
            rows = await self._read(
                f"{_SELECT_INSTANCES} WHERE server = ?{_INSTANCE_ORDER}", (server,)
            )
        return [instance_from_row(row) for row in rows]

    async def delete_instance(self, id: str) -> None:
        await self._write(
            lambda connection: connection.execute("DELETE FROM instances WHERE id = ?", (id,))
        )

    # -- health ----------------------------------------------------------------------------

    async def integrity_check(self) -> str:
        rows = await self._read("PRAGMA integrity_check")
        return "\n".join(str(value) for row in rows for value in row.values())

    # -- the worker thread -----------------------------------------------------------------

    async def _run(self, work: Callable[[], T]) -> T:
        """``work()`` on the registry's thread, its errors mapped."""
        with self._mapped_errors():
            if self._closed:
                raise StoreError(f"registry {self.location} is closed")
            return await asyncio.get_running_loop().run_in_executor(self._worker, work)

    async def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
        """One statement, its own transaction; every row."""
        return await self._run(lambda: self._live.execute(sql, parameters).fetchall())

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in one write transaction, committed before this returns."""

        def transaction() -> T:
            connection = self._live
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return result

        return await self._run(transaction)

    @property
    def _live(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"registry {self.location} is not open")
        return self._connection

    def _connect(self) -> None:
        prepare_sqlite_file(self._database)
        connection = connect(self._database)
        self._connection = connection
        bring_to_head(connection, self._database)
        connection.row_factory = _dict_row

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


def _rows(connection: sqlite3.Connection, sql: str, parameters: dict[str, Any]) -> list[Row]:
    # fetchall: a RETURNING statement must run to its end before the COMMIT.
    return connection.execute(sql, parameters).fetchall()


def _locked_server(connection: sqlite3.Connection, slug: str) -> Row:
    """A server read inside a write transaction (it holds the write lock since BEGIN)."""
    rows: list[Row] = connection.execute(f"{_SELECT_SERVERS} WHERE slug = ?", (slug,)).fetchall()
    if not rows:
        raise no_server(slug)
    return rows[0]


def _update_server(connection: sqlite3.Connection, slug: str, spec: str, desired: int) -> Row:
    values = {"slug": slug, "spec": spec, "desired": desired, "now": time.time()}
    [row] = _rows(connection, _UPDATE_SERVER, values)
    return row
