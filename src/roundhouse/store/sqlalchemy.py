"""The registry on Postgres: SQLAlchemy Core on one async engine (asyncpg).

Postgres is for several gateway replicas sharing one registry, so the statements are written to
be safe under races: the primary key decides between two creates, an upsert is one ``INSERT ...
ON CONFLICT`` statement, a read-modify-write takes the row lock (``SELECT ... FOR UPDATE``).
Migrations run at open, under an advisory lock (``engine.upgrade``). Statement parameters are
hidden from SQLAlchemy's messages and logs, because a spec carries secrets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from sqlalchemy import ColumnElement, Row, case, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from roundhouse.errors import Conflict, NotFound
from roundhouse.spec import ServerSpec
from roundhouse.store.engine import describe, make_engine, normalize_url, upgrade
from roundhouse.store.records import InstanceRecord, ServerRecord
from roundhouse.store.rows import (
    check_desired,
    dump_spec,
    instance_from_row,
    instance_values,
    no_server,
    server_from_row,
)
from roundhouse.store.schema import instances, servers
from roundhouse.store.store import Store

__all__ = ["SQLAlchemyStore"]


class SQLAlchemyStore(Store):
    """The registry on Postgres; see :class:`~roundhouse.store.store.Store` for the API."""

    dialect = "postgresql"
    _foreign_errors = (SQLAlchemyError,)

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self._url = normalize_url(url)
        self._password = self._url.password if isinstance(self._url.password, str) else None
        self.location = describe(self._url)
        self._engine = make_engine(self._url, schema=schema)

    @classmethod
    async def _open(cls, url: str, *, schema: str | None) -> Self:
        store = cls(url, schema=schema)
        try:
            async with store._transaction() as conn:
                await conn.run_sync(upgrade)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self._engine.dispose()

    # -- servers ---------------------------------------------------------------------------

    async def create_server(
        self, spec: ServerSpec, desired_instances: int | None = None
    ) -> ServerRecord:
        desired = check_desired(spec, desired_instances)
        now = time.time()
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    servers.insert().values(
                        slug=spec.slug,
                        spec=dump_spec(spec),
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
        given = None if desired_instances is None else check_desired(spec, desired_instances)
        now = time.time()
        stmt = insert(servers).values(
            slug=spec.slug,
            spec=dump_spec(spec),
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
        async with self._transaction() as conn:
            row = (await conn.execute(stmt.returning(*servers.c))).one()
        return server_from_row(row._mapping)

    async def replace_server(self, spec: ServerSpec) -> ServerRecord:
        stmt = (
            update(servers)
            .where(servers.c.slug == spec.slug)
            .values(
                spec=dump_spec(spec),
                desired_instances=_clamped_desired(spec),
                generation=servers.c.generation + 1,
                updated_at=time.time(),
            )
            .returning(*servers.c)
        )
        async with self._transaction() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise no_server(spec.slug)
        return server_from_row(row._mapping)

    async def get_server(self, slug: str) -> ServerRecord:
        async with self._transaction() as conn:
            row = (await conn.execute(select(servers).where(servers.c.slug == slug))).first()
        if row is None:
            raise no_server(slug)
        return server_from_row(row._mapping)

    async def list_servers(self) -> list[ServerRecord]:
        async with self._transaction() as conn:
            rows = (await conn.execute(select(servers).order_by(servers.c.slug))).all()
        return [server_from_row(row._mapping) for row in rows]

    async def delete_server(self, slug: str) -> None:
        async with self._transaction() as conn:
            result = await conn.execute(delete(servers).where(servers.c.slug == slug))
        if result.rowcount == 0:
            raise no_server(slug)

    async def set_desired_instances(self, slug: str, n: int) -> ServerRecord:
        async with self._transaction() as conn:
            record = await self._locked_server(conn, slug)
            check_desired(record.spec, n)
            row = await self._update_server(conn, slug, desired_instances=n)
        return server_from_row(row._mapping)

    async def set_enabled(self, slug: str, enabled: bool) -> ServerRecord:
        async with self._transaction() as conn:
            record = await self._locked_server(conn, slug)
            spec = record.spec.model_copy(update={"enabled": enabled})
            row = await self._update_server(conn, slug, spec=dump_spec(spec))
        return server_from_row(row._mapping)

    # -- instances -------------------------------------------------------------------------

    async def save_instance(self, rec: InstanceRecord) -> None:
        rec.updated_at = time.time()
        values = instance_values(rec)
        stmt = insert(instances).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[instances.c.id],
            set_={name: stmt.excluded[name] for name in values if name != "id"},
        )
        async with self._transaction() as conn:
            try:
                await conn.execute(stmt)
            except IntegrityError:
                raise no_server(rec.server) from None

    async def get_instance(self, id: str) -> InstanceRecord:
        async with self._transaction() as conn:
            row = (await conn.execute(select(instances).where(instances.c.id == id))).first()
        if row is None:
            raise NotFound(f"no instance with id '{id}'")
        return instance_from_row(row._mapping)

    async def list_instances(self, server: str | None = None) -> list[InstanceRecord]:
        stmt = select(instances).order_by(instances.c.server, instances.c.ordinal, instances.c.id)
        if server is not None:
            stmt = stmt.where(instances.c.server == server)
        async with self._transaction() as conn:
            rows = (await conn.execute(stmt)).all()
        return [instance_from_row(row._mapping) for row in rows]

    async def delete_instance(self, id: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(delete(instances).where(instances.c.id == id))

    # -- health ----------------------------------------------------------------------------

    async def integrity_check(self) -> str:
        async with self._transaction() as conn:
            await conn.execute(select(1))
        return "ok"

    # -- plumbing --------------------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        with self._mapped_errors():
            async with self._engine.begin() as conn:
                yield conn

    async def _locked_server(self, conn: AsyncConnection, slug: str) -> ServerRecord:
        """Read a server for a read-modify-write, holding its row lock until the commit."""
        stmt = select(servers).where(servers.c.slug == slug).with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise no_server(slug)
        return server_from_row(row._mapping)

    async def _update_server(self, conn: AsyncConnection, slug: str, **values: Any) -> Row[Any]:
        stmt = (
            update(servers)
            .where(servers.c.slug == slug)
            .values(generation=servers.c.generation + 1, updated_at=time.time(), **values)
            .returning(*servers.c)
        )
        return (await conn.execute(stmt)).one()


def _clamped_desired(spec: ServerSpec) -> ColumnElement[int]:
    """The stored ``desired_instances``, moved into the new spec's range, as SQL."""
    current = servers.c.desired_instances
    low, high = spec.instances.min, spec.instances.max
    return case((current < low, low), (current > high, high), else_=current)
