"""Opening a registry database: URLs, the SQLite file and its pragmas, the migrations.

Kept apart from :mod:`roundhouse.store.store` so the Store reads as the registry's API, and this
module as the one place that knows how each backend must be set up to be safe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from roundhouse.errors import InvalidInput

__all__ = [
    "WRITE_OPTION",
    "describe",
    "make_engine",
    "normalize_url",
    "prepare_sqlite_file",
    "run_migrations",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 5000
#: Key of the Postgres advisory lock that lets one replica at a time run the migrations.
PG_MIGRATION_LOCK = 0x526F756E64
#: Execution option of the Store's write engine: its SQLite transactions start IMMEDIATE.
WRITE_OPTION = "roundhouse_write"


def make_engine(url: URL, *, schema: str | None = None) -> AsyncEngine:
    """An async engine for a normalized URL, with the SQLite pragmas installed.

    Statement parameters are hidden from SQLAlchemy's messages and logs: specs carry secrets.
    """
    connect_args: dict[str, Any] = {}
    if schema is not None:
        if url.get_backend_name() != "postgresql":
            raise InvalidInput("a schema applies to Postgres only", field="schema")
        connect_args["server_settings"] = {"search_path": schema}
    engine = create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=url.get_backend_name() == "postgresql",
        connect_args=connect_args,
    )
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", sqlite_on_begin)
    return engine


def normalize_url(url: str) -> URL:
    """Fill in the async driver; only SQLite and Postgres are registries."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput("the database URL cannot be parsed", field="database_url") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise InvalidInput(
        f"unsupported database URL scheme {parsed.drivername!r}: "
        "use sqlite:///PATH or postgresql://USER@HOST/DB",
        field="database_url",
    )


def describe(url: URL) -> str:
    """The database named without user or password, for messages and logs."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{url.database or ''}"
    port = f":{url.port}" if url.port else ""
    return f"postgresql://{url.host or ''}{port}/{url.database or ''}"


def prepare_sqlite_file(database: str | None) -> None:
    """Create the registry file 0600 (it holds secrets) in a 0700 directory if it is new.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode. An existing parent
    directory is left alone (it may be a shared one); an existing file is tightened.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        path.parent.chmod(0o700)  # mkdir's mode is filtered by the umask
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)


def sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions by itself; _sqlite_on_begin does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: in WAL mode NORMAL may lose the last commits on power loss, and a write that
        # got a success answer must survive.
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


def sqlite_on_begin(conn: Connection) -> None:
    # A write transaction takes the write lock at BEGIN, so it waits (busy_timeout) instead of
    # failing with SQLITE_BUSY when a reader would have to upgrade its lock.
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


#: The newest migration's revision. A registry already there is opened without importing alembic
#: at all (it costs ~10 MiB of memory and ~0.3 s); ``tests/unit/test_store.py`` checks that this
#: matches the migration scripts' head.
HEAD_REVISION = "0001"

#: Alembic's own bookkeeping table, as ``alembic stamp`` creates it.
_alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


class MigrationError(Exception):
    """The registry's schema cannot be brought to this version (e.g. it is newer)."""


def upgrade(connection: Connection) -> None:
    """Bring the registry to head, inside the caller's transaction.

    A registry at head is left alone. An empty database (a first start) gets the schema of
    :mod:`roundhouse.store.schema` and is stamped at head, without alembic: the migrations up to
    head build exactly that schema (``test_a_new_registry_has_the_schema_the_migrations_build``
    compares the two on both backends), and a gateway's first start should not pay for loading
    the migration machinery. Anything in between goes through the migrations.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if current == HEAD_REVISION:
            return
    elif not tables:
        create_at_head(connection)
        return
    run_migrations(connection)


def create_at_head(connection: Connection) -> None:
    """Create the schema of an empty database as the migrations would leave it at head."""
    from roundhouse.store.schema import metadata

    metadata.create_all(connection)
    _alembic_version.create(connection)
    connection.execute(_alembic_version.insert().values(version_num=HEAD_REVISION))


def run_migrations(connection: Connection) -> None:
    """Apply the alembic migrations up to head (the only place alembic is imported)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise MigrationError(str(exc)) from exc
