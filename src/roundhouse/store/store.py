"""The registry: server specs (desired state) and instances (last known actual state).

One :class:`Store` wraps one SQLAlchemy async engine, on SQLite (the default, a file in the data
directory) or Postgres (several gateway replicas sharing one registry). Every method is one short
transaction, so a method that returned has committed, and on SQLite (``synchronous=FULL`` in WAL
mode) that commit survives a crash of the gateway and a power loss.

Foreign errors are mapped here, on the way in: SQLAlchemy and OS errors become
:class:`~roundhouse.errors.StoreError` with a message that names the database but never its
credentials, unique and foreign-key violations become ``Conflict`` and ``NotFound``. Statement
parameters are hidden from SQLAlchemy's messages and logs, because a spec carries secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import ColumnElement, Row, Table, case, delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from roundhouse.control.states import Health, InstanceState
from roundhouse.errors import Conflict, InvalidInput, NotFound, RoundhouseError, StoreError
from roundhouse.spec import ServerSpec, spec_to_storage
from roundhouse.store.engine import (
    WRITE_OPTION,
    MigrationError,
    describe,
    make_engine,
    normalize_url,
    prepare_sqlite_file,
    upgrade,
)
from roundhouse.store.records import InstanceRecord, ServerRecord
from roundhouse.store.schema import instances, servers

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["Store"]

_INSTANCE_FIELDS = tuple(f.name for f in fields(InstanceRecord) if f.metadata.get("stored", True))


class Store:
    """The registry. Open it with ``await Store.open(url)`` or ``async with Store.connect(url)``.

    ``url`` is ``sqlite:///PATH`` or ``postgresql://USER:PASSWORD@HOST:PORT/DB`` (the async
    drivers, aiosqlite and asyncpg, are filled in). ``schema`` puts the Postgres tables in that
    schema (its ``search_path``), which must exist.
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self._url = normalize_url(url)
        self._password = self._url.password if isinstance(self._url.password, str) else None
        self.location = describe(self._url)
        self._engine = make_engine(self._url, schema=schema)
        # Same pool; its transactions take SQLite's write lock up front (BEGIN IMMEDIATE).
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> Store:
        """Open the registry, creating the SQLite file (0600) if needed, and migrate it."""
        store = cls(url, schema=schema)
        try:
            with store._mapped_errors():
                if store.dialect == "sqlite":
                    prepare_sqlite_file(store._url.database)
                async with store._writer.begin() as conn:
                    await conn.run_sync(upgrade)
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, schema: str | None = None) -> AsyncIterator[Store]:
        store = await cls.open(url, schema=schema)
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    # -- servers ---------------------------------------------------------------------------

    async def create_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        """Register a new server; ``Conflict`` if the slug is taken.

        The primary key decides, not a prior read, so two replicas racing for one slug cannot
        both win. ``desired_instances`` defaults to ``spec.instances.min``.
        """
        desired = _check_desired(spec, desired_instances)
        now = time.time()
        async with self._write() as conn:
            try:
                await conn.execute(
                    servers.insert().values(
                        slug=spec.slug,
                        spec=_dump_spec(spec),
                        desired_instances=desired,
                        generation=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
            except IntegrityError:
                raise Conflict(f"a server named '{spec.slug}' already exists") from None
        return ServerRecord(spec, desired, 1, now, now)

    async def upsert_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        """Insert the server or replace its spec, in one statement (safe under races).

        An existing server keeps its ``desired_instances`` (clamped into the new min..max)
        unless one is given; its generation goes up by one.
        """
        given = None if desired_instances is None else _check_desired(spec, desired_instances)
        now = time.time()
        stmt = self._insert(servers).values(
            slug=spec.slug,
            spec=_dump_spec(spec),
            desired_instances=spec.instances.min if given is None else given,
            generation=1,
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[servers.c.slug],
            set_={
                "spec": stmt.excluded.spec,
                "desired_instances": _clamped_desired(spec) if given is None else given,
                "generation": servers.c.generation + 1,
                "updated_at": now,
            },
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt.returning(*servers.c))).one()
        return _server_from_row(row)

    async def replace_server(self, spec: ServerSpec) -> ServerRecord:
        """Replace the spec of an existing server; ``NotFound`` if there is none.

        ``desired_instances`` is kept, clamped into the new ``spec.instances`` range.
        """
        stmt = (
            update(servers)
            .where(servers.c.slug == spec.slug)
            .values(
                spec=_dump_spec(spec),
                desired_instances=_clamped_desired(spec),
                generation=servers.c.generation + 1,
                updated_at=time.time(),
            )
            .returning(*servers.c)
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise _no_server(spec.slug)
        return _server_from_row(row)

    async def get_server(self, slug: str) -> ServerRecord:
        async with self._read() as conn:
            row = (await conn.execute(select(servers).where(servers.c.slug == slug))).first()
        if row is None:
            raise _no_server(slug)
        return _server_from_row(row)

    async def list_servers(self) -> list[ServerRecord]:
        """Every server, ordered by slug."""
        async with self._read() as conn:
            rows = (await conn.execute(select(servers).order_by(servers.c.slug))).all()
        return [_server_from_row(row) for row in rows]

    async def delete_server(self, slug: str) -> None:
        """Remove the server and (by cascade) its instances; ``NotFound`` if there is none."""
        async with self._write() as conn:
            result = await conn.execute(delete(servers).where(servers.c.slug == slug))
        if result.rowcount == 0:
            raise _no_server(slug)

    async def set_desired_instances(self, slug: str, n: int) -> ServerRecord:
        """Scale: ``InvalidInput`` unless ``n`` is within ``spec.instances.min..max``."""
        async with self._write() as conn:
            record = await self._locked_server(conn, slug)
            _check_desired(record.spec, n)
            row = await self._update_server(conn, slug, desired_instances=n)
        return _server_from_row(row)

    async def set_enabled(self, slug: str, enabled: bool) -> ServerRecord:
        """Rewrite ``spec.enabled``; the reconciler starts or stops the instances."""
        async with self._write() as conn:
            record = await self._locked_server(conn, slug)
            spec = record.spec.model_copy(update={"enabled": enabled})
            row = await self._update_server(conn, slug, spec=_dump_spec(spec))
        return _server_from_row(row)

    # -- instances -------------------------------------------------------------------------

    async def save_instance(self, rec: InstanceRecord) -> None:
        """Insert or update the instance by id; sets ``rec.updated_at`` to now.

        ``NotFound`` if its server does not exist (any more: deleting a server deletes its
        instances, and a late save from the supervisor must not bring them back).
        """
        rec.updated_at = time.time()
        values = _instance_values(rec)
        stmt = self._insert(instances).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[instances.c.id],
            set_={name: stmt.excluded[name] for name in values if name != "id"},
        )
        async with self._write() as conn:
            try:
                await conn.execute(stmt)
            except IntegrityError:
                raise _no_server(rec.server) from None

    async def get_instance(self, id: str) -> InstanceRecord:
        async with self._read() as conn:
            row = (await conn.execute(select(instances).where(instances.c.id == id))).first()
        if row is None:
            raise NotFound(f"no instance with id '{id}'")
        return _instance_from_row(row)

    async def list_instances(self, server: str | None = None) -> list[InstanceRecord]:
        """Instances of one server or of all, ordered by server and ordinal."""
        stmt = select(instances).order_by(instances.c.server, instances.c.ordinal, instances.c.id)
        if server is not None:
            stmt = stmt.where(instances.c.server == server)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_instance_from_row(row) for row in rows]

    async def delete_instance(self, id: str) -> None:
        """Forget an instance. Idempotent: a cascade from its server may have come first."""
        async with self._write() as conn:
            await conn.execute(delete(instances).where(instances.c.id == id))

    # -- health ----------------------------------------------------------------------------

    async def integrity_check(self) -> str:
        """``"ok"`` when the database is sound (SQLite's ``PRAGMA integrity_check``).

        Postgres checks itself; there a trivial query proves the registry is reachable.
        """
        async with self._read() as conn:
            if self.dialect == "sqlite":
                rows = (await conn.exec_driver_sql("PRAGMA integrity_check")).scalars().all()
                return "\n".join(str(row) for row in rows)
            await conn.execute(select(1))
            return "ok"

    # -- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with self._mapped_errors():
            async with self._engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with self._mapped_errors():
            async with self._writer.begin() as conn:
                yield conn

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        try:
            yield
        except RoundhouseError:
            raise
        # CommandError: e.g. a registry migrated by a newer Roundhouse than this one.
        except (SQLAlchemyError, OSError, MigrationError) as exc:
            raise StoreError(f"registry {self.location} failed: {self._explain(exc)}") from exc

    def _explain(self, exc: BaseException) -> str:
        """The driver's own words (first line), without the password should it appear."""
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        detail = f"{type(orig).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        if self._password:
            detail = detail.replace(self._password, "***")
        return detail

    def _insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """The dialect's INSERT, which knows ``ON CONFLICT`` (same syntax on both). Imported
        here: a gateway on SQLite never loads the Postgres dialect."""
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)

    async def _locked_server(self, conn: AsyncConnection, slug: str) -> ServerRecord:
        """Read a server for a read-modify-write (row lock on Postgres, write lock on SQLite)."""
        stmt = select(servers).where(servers.c.slug == slug).with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise _no_server(slug)
        return _server_from_row(row)

    async def _update_server(self, conn: AsyncConnection, slug: str, **values: Any) -> Row[Any]:
        stmt = (
            update(servers)
            .where(servers.c.slug == slug)
            .values(generation=servers.c.generation + 1, updated_at=time.time(), **values)
            .returning(*servers.c)
        )
        return (await conn.execute(stmt)).one()


def _check_desired(spec: ServerSpec, n: int | None) -> int:
    if n is None:
        return spec.instances.min
    low, high = spec.instances.min, spec.instances.max
    if not low <= n <= high:
        raise InvalidInput(
            f"instances must be between {low} and {high} for '{spec.slug}', not {n}",
            field="instances",
        )
    return n


def _clamped_desired(spec: ServerSpec) -> ColumnElement[int]:
    """The stored ``desired_instances``, moved into the new spec's range, as SQL."""
    current = servers.c.desired_instances
    low, high = spec.instances.min, spec.instances.max
    return case((current < low, low), (current > high, high), else_=current)


def _no_server(slug: str) -> NotFound:
    return NotFound(f"no server named '{slug}'")


def _dump_spec(spec: ServerSpec) -> str:
    return json.dumps(spec_to_storage(spec), sort_keys=True, separators=(",", ":"))


def _server_from_row(row: Row[Any]) -> ServerRecord:
    try:
        spec = ServerSpec.model_validate(json.loads(row.spec))
    except ValueError:  # pydantic's ValidationError and a JSON error are both ValueErrors
        # Never the validation message itself: it quotes the input, secrets included.
        raise StoreError(f"the stored spec of '{row.slug}' is not valid any more") from None
    return ServerRecord(
        spec=spec,
        desired_instances=row.desired_instances,
        generation=row.generation,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _instance_values(rec: InstanceRecord) -> dict[str, Any]:
    values = {name: getattr(rec, name) for name in _INSTANCE_FIELDS}
    values["state"] = InstanceState(rec.state).value
    values["health"] = Health(rec.health).value
    values["stderr_tail"] = json.dumps(list(rec.stderr_tail))
    return values


def _instance_from_row(row: Row[Any]) -> InstanceRecord:
    data = {name: row._mapping[name] for name in _INSTANCE_FIELDS}
    data["state"] = InstanceState(data["state"])
    data["health"] = Health(data["health"])
    data["stderr_tail"] = json.loads(data["stderr_tail"])
    return InstanceRecord(**data)
