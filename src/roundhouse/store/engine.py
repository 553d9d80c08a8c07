"""SQLAlchemy's side of opening a registry: the Postgres engine, and the alembic migrations.

The migrations serve both backends: at every open of a Postgres registry (``upgrade``, inside the
store's first transaction), and for SQLite only when :mod:`roundhouse.store.sqlite_schema` finds
a registry that is not at head (``migrate_sqlite``, the one time a SQLite gateway imports
SQLAlchemy). Kept apart from the stores so they read as the registry's API, and this module as
the one place that knows how SQLAlchemy must be set up to be safe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    NullPool,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from roundhouse.errors import InvalidInput
from roundhouse.store.sqlite_schema import SQLITE_PRAGMAS
from roundhouse.store.store import HEAD_REVISION, MigrationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "describe",
    "make_engine",
    "migrate_sqlite",
    "normalize_url",
    "run_migrations",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")
#: Key of the Postgres advisory lock that lets one replica at a time run the migrations.
PG_MIGRATION_LOCK = 0x526F756E64


def make_engine(url: URL, *, schema: str | None = None) -> AsyncEngine:
    """An async engine for a normalized Postgres URL.

    Statement parameters are hidden from SQLAlchemy's messages and logs: specs carry secrets.
    The async layer (it imports the ORM, ~7 MiB) is loaded here: a SQLite registry being
    migrated has no use for it.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    connect_args: dict[str, Any] = {}
    if schema is not None:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(
        url, hide_parameters=True, pool_pre_ping=True, connect_args=connect_args
    )


def normalize_url(url: str) -> URL:
    """Fill in the async driver of a Postgres URL (SQLite ones go to the stdlib store)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput("the database URL cannot be parsed", field="database_url") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise InvalidInput(
        f"unsupported database URL scheme {parsed.drivername!r} for a SQLAlchemy registry: "
        "use postgresql://USER@HOST/DB",
        field="database_url",
    )


def describe(url: URL) -> str:
    """The database named without user or password, for messages and logs."""
    port = f":{url.port}" if url.port else ""
    return f"postgresql://{url.host or ''}{port}/{url.database or ''}"


def migrate_sqlite(database: str) -> None:
    """Bring an existing SQLite registry to head with alembic, in one ``BEGIN IMMEDIATE``.

    A plain (not async) engine on the stdlib driver, with the stdlib store's pragmas; it is
    disposed before returning, and the stdlib store carries on with its own connection.
    """
    engine = create_engine(
        URL.create("sqlite", database=database), hide_parameters=True, poolclass=NullPool
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    try:
        with engine.begin() as connection:
            upgrade(connection)
    except DBAPIError as exc:
        raise MigrationError(str(exc), orig=exc.orig) from exc
    finally:
        engine.dispose()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions by itself; _sqlite_on_begin does it.
    dbapi_connection.isolation_level = None
    for pragma in SQLITE_PRAGMAS:
        dbapi_connection.execute(pragma)


def _sqlite_on_begin(conn: Connection) -> None:
    # A migration writes: it takes the write lock at BEGIN (waiting out busy_timeout), never
    # by upgrading a read lock halfway.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


#: Alembic's own bookkeeping table, as ``alembic stamp`` creates it.
_alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


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
