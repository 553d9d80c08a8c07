"""The registry on real SQLite files and a real PostgreSQL (fixtures in tests/conftest.py).

Every test of the API runs on both backends, each through the store ``Store.open`` picks for it:
the stdlib one for SQLite, the SQLAlchemy one for Postgres. The schema tests hold the two to one
schema, and the SQLite registry to the one the alembic migrations build.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, select, text

from roundhouse.control.states import Health, InstanceState
from roundhouse.errors import Conflict, InvalidInput, NotFound, StoreError
from roundhouse.spec import ServerSpec
from roundhouse.store import InstanceRecord, ServerRecord, Store
from roundhouse.store import rows as row_codec
from roundhouse.store.engine import MIGRATIONS, create_at_head, run_migrations
from roundhouse.store.schema import instances, metadata, servers
from roundhouse.store.sqlalchemy import SQLAlchemyStore
from roundhouse.store.sqlite import SQLiteStore
from roundhouse.store.store import HEAD_REVISION


def make_spec(slug: str = "github", **fields: Any) -> ServerSpec:
    data: dict[str, Any] = {"slug": slug, "transport": {"command": "npx", "args": ["-y", slug]}}
    data.update(fields)
    return ServerSpec.model_validate(data)


def make_instance(server: str = "github", ordinal: int = 0, **fields: Any) -> InstanceRecord:
    return InstanceRecord(id=f"{server}-{ordinal}", server=server, ordinal=ordinal, **fields)


# -- servers ----------------------------------------------------------------------------------


async def test_a_created_server_reads_back_as_it_was_written(store: Store) -> None:
    spec = make_spec(name="GitHub", tags=["code"], priority=7, instances={"min": 1, "max": 3})
    created = await store.create_server(spec, 2)
    assert created.generation == 1
    assert created.desired_instances == 2
    read = await store.get_server("github")
    assert read == created
    assert read.spec == spec
    assert read.slug == "github"


async def test_desired_instances_default_to_the_spec_minimum(store: Store) -> None:
    created = await store.create_server(make_spec(instances={"min": 2, "max": 4}))
    assert created.desired_instances == 2


async def test_a_second_server_with_the_same_slug_is_a_conflict(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    with pytest.raises(Conflict, match="a server named 'github' already exists"):
        await store.create_server(make_spec(name="another"), 1)
    assert (await store.get_server("github")).spec.name is None


async def test_racing_creates_of_one_slug_let_exactly_one_win(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_server(make_spec(name=f"n{i}"), 1) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ServerRecord) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 7


async def test_servers_are_listed_by_slug(store: Store) -> None:
    for slug in ("zeta", "alpha", "mid-1"):
        await store.create_server(make_spec(slug), 1)
    assert [r.slug for r in await store.list_servers()] == ["alpha", "mid-1", "zeta"]


async def test_every_lookup_of_a_missing_server_is_not_found(store: Store) -> None:
    message = "no server named 'nope'"
    with pytest.raises(NotFound, match=message):
        await store.get_server("nope")
    with pytest.raises(NotFound, match=message):
        await store.replace_server(make_spec("nope"))
    with pytest.raises(NotFound, match=message):
        await store.delete_server("nope")
    with pytest.raises(NotFound, match=message):
        await store.set_desired_instances("nope", 1)
    with pytest.raises(NotFound, match=message):
        await store.set_enabled("nope", False)
    assert await store.list_servers() == []


async def test_replacing_a_server_bumps_its_generation_and_clamps_desired(store: Store) -> None:
    created = await store.create_server(make_spec(instances={"min": 1, "max": 5}), 5)
    replaced = await store.replace_server(make_spec(name="new", instances={"min": 1, "max": 3}))
    assert replaced.generation == 2
    assert replaced.desired_instances == 3
    assert replaced.spec.name == "new"
    assert replaced.created_at == created.created_at
    assert replaced.updated_at >= created.updated_at
    raised = await store.replace_server(make_spec(instances={"min": 4, "max": 6}))
    assert (raised.generation, raised.desired_instances) == (3, 4)
    assert await store.get_server("github") == raised


async def test_upsert_inserts_then_replaces_keeping_desired_instances(store: Store) -> None:
    inserted = await store.upsert_server(make_spec(instances={"min": 1, "max": 4}))
    assert (inserted.generation, inserted.desired_instances) == (1, 1)
    await store.set_desired_instances("github", 3)
    updated = await store.upsert_server(make_spec(name="renamed", instances={"min": 1, "max": 4}))
    assert (updated.generation, updated.desired_instances) == (3, 3)
    assert updated.spec.name == "renamed"
    assert updated.created_at == inserted.created_at
    assert await store.get_server("github") == updated


async def test_upsert_with_desired_instances_sets_them(store: Store) -> None:
    await store.upsert_server(make_spec(), 1)
    updated = await store.upsert_server(make_spec(), 4)
    assert (updated.generation, updated.desired_instances) == (2, 4)


async def test_upsert_clamps_kept_desired_instances_into_the_new_range(store: Store) -> None:
    await store.upsert_server(make_spec(instances={"min": 1, "max": 8}), 8)
    shrunk = await store.upsert_server(make_spec(instances={"min": 1, "max": 2}))
    assert shrunk.desired_instances == 2


async def test_scaling_sets_desired_instances_and_bumps_generation(store: Store) -> None:
    await store.create_server(make_spec(instances={"min": 0, "max": 4}), 1)
    scaled = await store.set_desired_instances("github", 4)
    assert (scaled.generation, scaled.desired_instances) == (2, 4)
    assert (await store.set_desired_instances("github", 0)).desired_instances == 0


async def test_scaling_outside_the_spec_range_is_invalid_and_writes_nothing(store: Store) -> None:
    await store.create_server(make_spec(instances={"min": 1, "max": 2}), 1)
    for n in (0, 3, -1):
        with pytest.raises(InvalidInput, match="between 1 and 2") as caught:
            await store.set_desired_instances("github", n)
        assert caught.value.field == "instances"
    assert (await store.get_server("github")).generation == 1
    with pytest.raises(InvalidInput):
        await store.create_server(make_spec("other", instances={"min": 1, "max": 2}), 9)


async def test_disabling_a_server_rewrites_its_spec_and_bumps_generation(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    disabled = await store.set_enabled("github", False)
    assert disabled.spec.enabled is False
    assert disabled.generation == 2
    assert (await store.get_server("github")).spec.enabled is False
    assert (await store.set_enabled("github", True)).spec.enabled is True


async def test_secrets_are_stored_and_read_back_intact(store: Store) -> None:
    stdio = make_spec(
        "stdio-secret",
        transport={"command": "srv", "env": {"GITHUB_TOKEN": "ghp_env_secret"}},
        auth={"type": "api_key", "key": "key-secret-1"},
    )
    remote = make_spec(
        "http-secret",
        transport={"url": "https://example.com/mcp", "headers": {"X-Token": "hdr-secret"}},
        auth={"type": "bearer", "token": "tok-secret-2"},
    )
    await store.create_server(stdio, 1)
    await store.upsert_server(remote)
    got_stdio = (await store.get_server("stdio-secret")).spec
    got_remote = (await store.get_server("http-secret")).spec
    assert got_stdio.auth.key is not None
    assert got_stdio.auth.key.get_secret_value() == "key-secret-1"
    assert got_stdio.transport.model_dump()["env"] == {"GITHUB_TOKEN": "ghp_env_secret"}
    assert got_remote.auth.token is not None
    assert got_remote.auth.token.get_secret_value() == "tok-secret-2"
    assert got_remote.transport.model_dump()["headers"] == {"X-Token": "hdr-secret"}


# -- instances --------------------------------------------------------------------------------


async def test_an_instance_round_trips_every_field(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    rec = InstanceRecord(
        id="github-0-abc",
        server="github",
        ordinal=3,
        state=InstanceState.DEGRADED,
        health=Health.DEGRADED,
        pid=4_194_303,
        pgid=4_194_303,
        pid_start_ticks=2**40 + 7,
        port=8123,
        endpoint="http://127.0.0.1:8123/mcp",
        started_at=1_700_000_000.125,
        stopped_at=1_700_000_100.5,
        last_health_check=1_700_000_050.25,
        last_response_time=0.0125,
        restart_count=4,
        last_exit_code=-9,
        last_error="exited with signal 9",
        stderr_tail=["line one", "ünïcode ✓", "", "x" * 2000],
        owner="boot-1234",
    )
    await store.save_instance(rec)
    assert rec.updated_at > 0
    got = await store.get_instance("github-0-abc")
    assert got == rec
    assert isinstance(got.state, InstanceState)
    assert isinstance(got.health, Health)


async def test_an_instance_with_only_defaults_round_trips(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    rec = make_instance()
    await store.save_instance(rec)
    assert await store.get_instance(rec.id) == rec


async def test_saving_an_instance_again_updates_it_in_place(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    rec = make_instance()
    await store.save_instance(rec)
    rec.state, rec.pid, rec.stderr_tail = InstanceState.RUNNING, 42, ["ready"]
    await store.save_instance(rec)
    [got] = await store.list_instances("github")
    assert (got.state, got.pid, got.stderr_tail) == (InstanceState.RUNNING, 42, ["ready"])


async def test_instances_are_listed_by_server_and_ordinal(store: Store) -> None:
    for slug in ("bravo", "alpha"):
        await store.create_server(make_spec(slug), 1)
    for server, ordinal in (("bravo", 1), ("alpha", 2), ("bravo", 0), ("alpha", 0)):
        await store.save_instance(make_instance(server, ordinal))
    everything = [(i.server, i.ordinal) for i in await store.list_instances()]
    assert everything == [("alpha", 0), ("alpha", 2), ("bravo", 0), ("bravo", 1)]
    assert [i.ordinal for i in await store.list_instances("bravo")] == [0, 1]
    assert await store.list_instances("nobody") == []


async def test_an_instance_of_an_unknown_server_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no server named 'ghost'"):
        await store.save_instance(make_instance("ghost"))
    assert await store.list_instances() == []


async def test_deleting_an_instance_forgets_it_and_is_idempotent(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    await store.save_instance(make_instance())
    await store.delete_instance("github-0")
    await store.delete_instance("github-0")
    with pytest.raises(NotFound, match="no instance with id 'github-0'"):
        await store.get_instance("github-0")


async def test_deleting_a_server_deletes_its_instances(store: Store) -> None:
    for slug in ("github", "keep"):
        await store.create_server(make_spec(slug), 1)
        await store.save_instance(make_instance(slug, 0))
        await store.save_instance(make_instance(slug, 1))
    await store.delete_server("github")
    assert [i.server for i in await store.list_instances()] == ["keep", "keep"]
    with pytest.raises(NotFound):
        await store.get_instance("github-0")
    with pytest.raises(NotFound):
        await store.get_server("github")


async def test_many_concurrent_writes_all_land(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    await asyncio.gather(*(store.save_instance(make_instance(ordinal=n)) for n in range(40)))
    assert [i.ordinal for i in await store.list_instances()] == list(range(40))


# -- opening, migrations, durability ----------------------------------------------------------


async def test_integrity_check_is_ok(store: Store) -> None:
    await store.create_server(make_spec(), 1)
    assert await store.integrity_check() == "ok"


async def _versions(target: Any) -> list[str]:
    """The alembic_version rows, read past the store."""
    if target.backend == "sqlite":
        with _sqlite(Path(target.url.removeprefix("sqlite:///"))) as conn:
            return [v for (v,) in conn.execute("SELECT version_num FROM alembic_version")]
    conn = await asyncpg.connect(target.url)
    try:
        rows = await conn.fetch(f'SELECT version_num FROM "{target.schema}".alembic_version')
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def test_reopening_runs_the_migrations_once_and_keeps_the_data(
    store_target: Any,
) -> None:
    async with Store.connect(store_target.url, schema=store_target.schema) as first:
        await first.create_server(make_spec(), 1)
    async with Store.connect(store_target.url, schema=store_target.schema) as second:
        assert [r.slug for r in await second.list_servers()] == ["github"]
        assert second.dialect == store_target.backend
    assert await _versions(store_target) == [HEAD_REVISION]


async def test_each_backend_is_opened_by_its_own_store(store_target: Any, store: Store) -> None:
    expected = {"sqlite": SQLiteStore, "postgresql": SQLAlchemyStore}[store_target.backend]
    assert type(store) is expected
    assert store.dialect == store_target.backend


async def test_store_works_as_an_async_context_manager_after_open(
    store_target: Any,
) -> None:
    async with await Store.open(store_target.url, schema=store_target.schema) as opened:
        assert await opened.list_servers() == []


async def test_the_sqlite_registry_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "registry.db"
    async with Store.connect(f"sqlite:///{path}") as opened:
        await opened.create_server(make_spec(), 1)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        wal = path.with_name("registry.db-wal")
        assert wal.exists()
        assert stat.S_IMODE(os.stat(wal).st_mode) == 0o600


async def test_an_existing_loose_sqlite_file_is_tightened(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "registry.db"
    path.touch()
    path.chmod(0o644)
    async with Store.connect(f"sqlite:///{path}"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # An existing parent may be shared; it is not the store's to change.
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755


async def test_sqlite_connections_are_wal_with_full_synchronous(tmp_path: Path) -> None:
    async with Store.connect(f"sqlite:///{tmp_path / 'registry.db'}") as opened:
        assert isinstance(opened, SQLiteStore)

        async def pragma(name: str) -> Any:
            [row] = await opened._read(f"PRAGMA {name}")
            [value] = row.values()
            return value

        assert await pragma("journal_mode") == "wal"
        assert await pragma("synchronous") == 2  # FULL
        assert await pragma("foreign_keys") == 1
        assert await pragma("busy_timeout") == 5000


async def test_a_cancelled_write_leaves_the_sqlite_registry_usable(tmp_path: Path) -> None:
    # The transaction runs to its end (commit or rollback) in the registry's thread whatever
    # happens to the task that asked for it, so the connection is never left inside one.
    async with Store.connect(f"sqlite:///{tmp_path / 'registry.db'}") as opened:
        assert isinstance(opened, SQLiteStore)
        writes = [
            asyncio.create_task(opened.create_server(make_spec(f"s{n}"), 1)) for n in range(20)
        ]
        await asyncio.sleep(0)
        for task in writes[::2]:
            task.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        landed = {r.slug for r in await opened.list_servers()}
        assert {f"s{n}" for n in range(1, 20, 2)} <= landed
        await opened.create_server(make_spec("after"), 1)
        assert opened._live.in_transaction is False
        assert await opened.integrity_check() == "ok"


async def test_a_closed_sqlite_store_answers_with_a_store_error(tmp_path: Path) -> None:
    opened = await Store.open(f"sqlite:///{tmp_path / 'registry.db'}")
    await opened.close()
    await opened.close()  # twice is fine
    with pytest.raises(StoreError, match=r"registry sqlite:///.*registry\.db is closed"):
        await opened.list_servers()


async def test_a_failed_postgres_connection_never_shows_the_password() -> None:
    for url in (
        "postgresql://admin:s3cr3t-Passw0rd@127.0.0.1:1/test",
        "postgresql://admin:s3cr3t-Passw0rd@127.0.0.1:5432/no_such_database_here",
    ):
        with pytest.raises(StoreError) as caught:
            await Store.open(url)
        message = str(caught.value)
        assert "s3cr3t-Passw0rd" not in message
        # The server may name the role in its own diagnostic; the URL itself is never shown.
        assert "admin:" not in message
        assert "127.0.0.1" in message


async def test_an_unsupported_database_url_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unsupported database URL scheme 'mysql'"):
        await Store.open("mysql://u:p@localhost/db")
    with pytest.raises(InvalidInput, match="unsupported database URL scheme 'sqlite\\+pysqlite'"):
        await Store.open(f"sqlite+pysqlite:///{tmp_path / 'a.db'}")
    for bad in ("not a url", "", "sqlite:", "://x", "\x00sqlite:///x"):
        with pytest.raises(InvalidInput, match="cannot be parsed") as caught:
            await Store.open(bad)
        assert caught.value.field == "database_url"
    for bad in (
        "sqlite://user:secret@host/a.db",
        f"sqlite:///{tmp_path / 'a.db'}?mode=ro",
        "sqlite://host:1/a.db",
    ):
        with pytest.raises(InvalidInput, match="sqlite:///PATH, without host") as caught:
            await Store.open(bad)
        assert "secret" not in str(caught.value)
    with pytest.raises(InvalidInput, match="a schema applies to Postgres only"):
        await Store.open(f"sqlite:///{tmp_path / 'a.db'}", schema="elsewhere")
    assert list(tmp_path.iterdir()) == []


async def test_the_old_aiosqlite_url_names_the_same_registry(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    async with Store.connect(f"sqlite+aiosqlite:///{path}") as first:
        await first.create_server(make_spec(), 1)
    async with Store.connect(f"sqlite:///{path}") as second:
        assert [r.slug for r in await second.list_servers()] == ["github"]


async def test_an_unreadable_sqlite_registry_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not a database, and it is long enough to be read as one" * 100)
    with pytest.raises(
        StoreError, match=r"registry sqlite:///.*registry\.db failed: DatabaseError"
    ):
        await Store.open(f"sqlite:///{path}")


def test_the_head_revision_constant_matches_the_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


# -- one schema, whoever wrote it ---------------------------------------------------------------


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _engine(path: Path) -> Iterator[Engine]:
    """SQLAlchemy on the SQLite file, as the migration path uses it."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()


def _alembic(conn: Connection, command_name: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = conn
    getattr(command, command_name)(config, revision)


def _schema_of(conn: Connection) -> dict[str, Any]:
    """Everything about the registry's tables a migration decides, as SQLAlchemy reads it."""
    inspector = inspect(conn)
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        tables[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(name)
            ],
            "pk": inspector.get_pk_constraint(name),
            "fks": inspector.get_foreign_keys(name),
            "indexes": sorted(inspector.get_indexes(name), key=lambda index: str(index["name"])),
        }
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        tables["sqlite_master"] = [tuple(row) for row in rows]
    return tables


def _sqlite_schema(path: Path) -> dict[str, Any]:
    """The file's ``sqlite_master`` text and what SQLite reports of each column, index and key."""
    with _sqlite(path) as conn:
        schema: dict[str, Any] = {
            "sqlite_master": conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
            ).fetchall()
        }
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        for (table,) in tables.fetchall():
            indexes = conn.execute(f"PRAGMA index_list({table})").fetchall()
            schema[table] = {
                "columns": conn.execute(f"PRAGMA table_xinfo({table})").fetchall(),
                # Without index_list's first field, the order SQLite happens to list them in.
                "indexes": sorted(
                    (index[1:], conn.execute(f"PRAGMA index_xinfo({index[1]})").fetchall())
                    for index in indexes
                ),
                "fks": conn.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            }
    return schema


def _unmigrated_differences(conn: Connection) -> list[Any]:
    """What alembic's autogenerate would change to make the database match schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_a_new_sqlite_registry_has_the_schema_the_migrations_build(tmp_path: Path) -> None:
    # A first start creates the schema without SQLAlchemy or alembic; it must be exactly what
    # the migrations build (and what schema.py declares), so that later migrations find what
    # they expect and a registry means the same whoever created it.
    async with Store.connect(f"sqlite:///{tmp_path / 'stdlib.db'}") as fresh:
        assert isinstance(fresh, SQLiteStore)
    with _engine(tmp_path / "migrated.db") as engine, engine.begin() as conn:
        run_migrations(conn)
    with _engine(tmp_path / "declared.db") as engine, engine.begin() as conn:
        create_at_head(conn)

    stdlib = _sqlite_schema(tmp_path / "stdlib.db")
    assert {"servers", "instances", "alembic_version"} <= set(stdlib)
    assert stdlib == _sqlite_schema(tmp_path / "migrated.db")
    assert stdlib == _sqlite_schema(tmp_path / "declared.db")
    with _engine(tmp_path / "stdlib.db") as engine, engine.connect() as conn:
        seen_by_sqlalchemy = _schema_of(conn)
        assert _unmigrated_differences(conn) == []
    with _engine(tmp_path / "migrated.db") as engine, engine.connect() as conn:
        assert seen_by_sqlalchemy == _schema_of(conn)
    with _sqlite(tmp_path / "stdlib.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (HEAD_REVISION,)
        ]


def _drop_all(conn: Connection) -> None:
    for name in ("instances", "servers", "alembic_version"):
        conn.exec_driver_sql(f"DROP TABLE {name}")


@pytest.mark.parametrize(
    "store_target", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_new_postgres_registry_has_the_schema_the_migrations_build(
    store_target: Any,
) -> None:
    from roundhouse.store.engine import upgrade

    store = SQLAlchemyStore(store_target.url, schema=store_target.schema)
    try:
        async with store._engine.begin() as conn:
            await conn.run_sync(run_migrations)
            migrated = await conn.run_sync(_schema_of)
            await conn.run_sync(_drop_all)
            assert await conn.run_sync(_schema_of) == {}
            await conn.run_sync(upgrade)
            created = await conn.run_sync(_schema_of)
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert await conn.run_sync(_unmigrated_differences) == []
    finally:
        await store.close()
    assert set(migrated) >= {"servers", "instances", "alembic_version"}
    assert created == migrated
    assert [v[0] for v in version] == [HEAD_REVISION]


def _a_server_and_an_instance() -> tuple[ServerSpec, InstanceRecord]:
    spec = make_spec(auth={"type": "api_key", "key": "key-secret"}, instances={"min": 1, "max": 3})
    rec = make_instance(
        state=InstanceState.RUNNING,
        health=Health.HEALTHY,
        pid=4242,
        pid_start_ticks=2**40,
        started_at=1_700_000_000.5,
        stderr_tail=["one", "ünïcode ✓"],
        owner="boot-1",
        updated_at=1_700_000_001.25,
    )
    return spec, rec


@pytest.mark.parametrize("build", [run_migrations, create_at_head], ids=["alembic", "schema.py"])
async def test_a_registry_sqlalchemy_created_and_wrote_reads_back_through_the_sqlite_store(
    tmp_path: Path, build: Any
) -> None:
    path = tmp_path / "registry.db"
    spec, rec = _a_server_and_an_instance()
    with _engine(path) as engine, engine.begin() as conn:
        build(conn)
        conn.execute(
            servers.insert().values(
                slug="github",
                spec=row_codec.dump_spec(spec),
                desired_instances=2,
                generation=5,
                created_at=1.0,
                updated_at=2.0,
            )
        )
        conn.execute(instances.insert().values(row_codec.instance_values(rec)))
    async with Store.connect(f"sqlite:///{path}") as opened:
        assert isinstance(opened, SQLiteStore)
        assert await opened.get_server("github") == ServerRecord(spec, 2, 5, 1.0, 2.0)
        assert await opened.list_instances() == [rec]
        scaled = await opened.set_desired_instances("github", 3)
        assert (scaled.generation, scaled.desired_instances) == (6, 3)
        await opened.delete_server("github")
        assert await opened.list_instances() == []


async def test_what_the_sqlite_store_wrote_reads_back_through_sqlalchemy(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    spec, rec = _a_server_and_an_instance()
    async with Store.connect(f"sqlite:///{path}") as opened:
        created = await opened.create_server(spec, 2)
        await opened.save_instance(rec)
    with _engine(path) as engine, engine.begin() as conn:
        # A later migration starts from here: alembic finds it at head, with nothing to change.
        _alembic(conn, "upgrade", "head")
        assert _unmigrated_differences(conn) == []
        server_rows = conn.execute(select(servers)).all()
        instance_rows = conn.execute(select(instances)).all()
    assert [row_codec.server_from_row(row._mapping) for row in server_rows] == [created]
    assert [row_codec.instance_from_row(row._mapping) for row in instance_rows] == [rec]


_OPEN_AND_REPORT = """
import asyncio, sys
from roundhouse.store import Store

async def main(url):
    async with Store.connect(url) as store:
        await store.create_server(__import__("roundhouse.spec").spec.ServerSpec.model_validate(
            {"slug": sys.argv[2], "transport": {"command": "x"}}))
        print(type(store).__name__, [s.slug for s in await store.list_servers()])

asyncio.run(main(sys.argv[1]))
print(sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic", "aiosqlite"}))
"""


def _open_in_a_new_process(path: Path, slug: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_REPORT, f"sqlite:///{path}", slug],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()


def test_a_registry_at_an_older_revision_is_migrated_then_opened_without_sqlalchemy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.db"
    # The oldest state alembic leaves: every migration undone, its version table empty.
    with _engine(path) as engine, engine.begin() as conn:
        _alembic(conn, "upgrade", "head")
        _alembic(conn, "downgrade", "base")
    with _sqlite(path) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (0,)
    assert _open_in_a_new_process(path, "first") == [
        "SQLiteStore ['first']",
        "['alembic', 'sqlalchemy']",
    ]
    with _engine(path) as engine, engine.connect() as conn:
        assert _unmigrated_differences(conn) == []
    assert _open_in_a_new_process(path, "second") == ["SQLiteStore ['first', 'second']", "[]"]
    with _sqlite(tmp_path / "fresh.db"):
        pass
    assert _open_in_a_new_process(tmp_path / "fresh.db", "new") == ["SQLiteStore ['new']", "[]"]


async def test_a_registry_from_a_newer_roundhouse_is_refused_and_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.db"
    async with Store.connect(f"sqlite:///{path}") as opened:
        await opened.create_server(make_spec(), 1)
    with _sqlite(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
        conn.commit()
    with pytest.raises(StoreError, match=r"registry sqlite:///.* failed: .*9999"):
        await Store.open(f"sqlite:///{path}")
    with _sqlite(path) as conn:
        assert conn.execute("SELECT slug FROM servers").fetchall() == [("github",)]


async def test_a_registry_with_tables_but_no_version_is_not_taken_for_a_new_one(
    tmp_path: Path,
) -> None:
    # Only an empty database gets the schema without alembic; a database that holds something
    # else is left to the migrations, which refuse to create tables that are already there.
    path = tmp_path / "registry.db"
    with _sqlite(path) as conn:
        conn.execute("CREATE TABLE servers (slug TEXT PRIMARY KEY)")
    with pytest.raises(StoreError, match="servers"):
        await Store.open(f"sqlite:///{path}")
