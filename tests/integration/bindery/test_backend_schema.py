"""The schema: a fresh database, one upgraded from the first migration (with data in it) and
``schema.metadata.create_all`` are the same tables, columns, keys and indexes, on both backends."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from roundhouse.bindery.backend import Database
from roundhouse.bindery.backend.errors import Unavailable
from roundhouse.bindery.backend.migrations import MIGRATIONS, VERSION_TABLE
from roundhouse.bindery.backend.schema import metadata


def describe(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    shape: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {VERSION_TABLE}):
        shape[table] = {
            "columns": [
                (c["name"], str(c["type"]).upper(), c["nullable"])
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk.get("options") or {}).get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
        }
    return shape


class Place:
    """One empty database on the backend under test: what ``--db`` takes, and how to reflect."""

    def __init__(self, backend: str, db: str, schema: str | None = None) -> None:
        self.backend, self.db, self.schema = backend, db, schema

    async def shape(self) -> dict[str, Any]:
        if self.backend == "sqlite":
            engine = create_engine(f"sqlite:///{self.db}")
            with engine.connect() as connection:
                return describe(connection)
        engine_async = create_async_engine(
            self.db.split("?")[0].replace("postgresql://", "postgresql+asyncpg://"),
            connect_args={"server_settings": {"search_path": self.schema or ""}},
        )
        try:
            async with engine_async.connect() as connection:
                return await connection.run_sync(describe)
        finally:
            await engine_async.dispose()

    async def create_all(self) -> None:
        if self.backend == "sqlite":
            engine = create_engine(f"sqlite:///{self.db}")
            metadata.create_all(engine)
            engine.dispose()
            return
        engine_async = create_async_engine(
            self.db.split("?")[0].replace("postgresql://", "postgresql+asyncpg://"),
            connect_args={"server_settings": {"search_path": self.schema or ""}},
        )
        try:
            async with engine_async.begin() as connection:
                await connection.run_sync(metadata.create_all)
        finally:
            await engine_async.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def places(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Place]]:
    """Three empty databases on one backend."""
    if request.param == "sqlite":
        yield [Place("sqlite", str(tmp_path / f"db{n}" / "bindery.db")) for n in range(3)]
        return
    import asyncpg

    url = request.getfixturevalue("store_postgres_url")
    schemas = [f"bindery_test_{uuid.uuid4().hex[:12]}" for _ in range(3)]
    admin = await asyncpg.connect(url)
    try:
        for schema in schemas:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield [Place("postgresql", f"{url}?search_path={s}", s) for s in schemas]
    finally:
        for schema in schemas:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def test_fresh_upgraded_and_declared_schemas_are_the_same(places: list[Place]) -> None:
    fresh, upgraded, declared = places
    database = Database(fresh.db)
    await database.open()
    await database.close()

    first = Database(upgraded.db)
    if first.dialect_name == "sqlite":
        Path(upgraded.db).parent.mkdir()
    await first.pool.open()
    await first.migrate(up_to=1)
    await first.close()
    assert "comments" not in await upgraded.shape()
    later = Database(upgraded.db)
    await later.open()
    await later.close()

    if declared.backend == "sqlite":
        Path(declared.db).parent.mkdir()
    await declared.create_all()

    fresh_shape = await fresh.shape()
    assert set(fresh_shape) == {"tasks", "task_tags", "dependencies", "comments"}
    assert await upgraded.shape() == fresh_shape
    assert await declared.shape() == fresh_shape


async def test_an_upgrade_keeps_the_rows_and_reopening_changes_nothing(
    places: list[Place],
) -> None:
    from roundhouse.bindery.backend.database import Op, Stmt
    from roundhouse.bindery.backend.service import Bindery

    def insert_a_task() -> Op[None]:
        yield Stmt(
            "INSERT INTO tasks (title, description, status, priority, tags, created_at, "
            "updated_at) VALUES ('old', '', 'todo', 'low', '[\"v1\"]', 'then', 'then')",
            fetch="exec",
        )

    place = places[0]
    first = Database(place.db)
    if first.dialect_name == "sqlite":
        Path(place.db).parent.mkdir()
    await first.pool.open()
    await first.migrate(up_to=1)
    await first.run(insert_a_task(), write=True)
    await first.close()
    for reopening in range(2):  # the upgrade, then a plain reopen
        database = Database(place.db)
        await database.open()
        bindery = Bindery(database)
        tasks = await bindery.call("list_tasks", {})
        assert [(t["title"], t["tags"]) for t in tasks["items"]] == [("old", ["v1"])]
        if not reopening:
            await bindery.call("add_comment", {"task_id": tasks["items"][0]["id"], "body": "c"})
        assert (await bindery.call("get_stats", {}))["comments"] == 1
        await database.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bindery.db"
    database = Database(str(path))
    await database.open()
    await database.close()
    connection = sqlite3.connect(path)
    connection.execute(f"UPDATE {VERSION_TABLE} SET version = ?", (MIGRATIONS[-1].version + 1,))
    connection.commit()
    connection.close()
    with pytest.raises(Unavailable, match="newer"):
        newer = Database(str(path))
        try:
            await newer.open()
        finally:
            await newer.close()


async def test_the_database_file_is_private_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "bindery.db"
    database = Database(str(path))
    await database.open()
    await database.close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


async def test_sqlite_connections_carry_the_pragmas(tmp_path: Path) -> None:
    database = Database(str(tmp_path / "bindery.db"))
    await database.open()
    try:
        async with database.pool.lease() as lease:
            conn = lease.connection
            pragmas = {
                name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in (
                    "journal_mode", "synchronous", "cache_size", "mmap_size",
                    "busy_timeout", "foreign_keys",
                )
            }  # fmt: skip
    finally:
        await database.close()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "cache_size": -65536,
        "mmap_size": 268435456,
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }
