"""The SQLite registry file without SQLAlchemy: created 0600, its pragmas, its schema at head.

A new database gets the tables as SQLAlchemy writes them for :mod:`roundhouse.store.schema` (the
same text in ``sqlite_master``, so nothing in the file tells who created it) and alembic's
version stamp at :data:`~roundhouse.store.store.HEAD_REVISION`; ``tests/unit/test_store.py``
compares this schema with the one the migrations build. A registry at head is opened as it is.
Anything else (a registry from an older Roundhouse, or a database that holds something else) is
handed to alembic (``engine.migrate_sqlite``): the only time a SQLite gateway imports SQLAlchemy.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from roundhouse.store.store import HEAD_REVISION

__all__ = ["HEAD_SCHEMA", "SQLITE_PRAGMAS", "bring_to_head", "connect", "prepare_sqlite_file"]

SQLITE_BUSY_TIMEOUT_MS = 5000

#: Run on every connection to the registry, by either store.
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys = ON",
    "PRAGMA journal_mode = WAL",
    # FULL: in WAL mode NORMAL may lose the last commits on power loss, and a write that got a
    # success answer must survive.
    "PRAGMA synchronous = FULL",
)

#: The registry at head, as ``schema.metadata.create_all`` and alembic's ``stamp`` write it.
HEAD_SCHEMA = (
    "CREATE TABLE servers (\n"
    "\tslug VARCHAR(40) NOT NULL, \n"
    "\tspec TEXT NOT NULL, \n"
    "\tdesired_instances INTEGER NOT NULL, \n"
    "\tgeneration INTEGER NOT NULL, \n"
    "\tcreated_at DOUBLE NOT NULL, \n"
    "\tupdated_at DOUBLE NOT NULL, \n"
    "\tCONSTRAINT pk_servers PRIMARY KEY (slug)\n"
    ")",
    "CREATE TABLE instances (\n"
    "\tid VARCHAR(64) NOT NULL, \n"
    "\tserver VARCHAR(40) NOT NULL, \n"
    "\tordinal INTEGER NOT NULL, \n"
    "\tstate VARCHAR(16) NOT NULL, \n"
    "\thealth VARCHAR(16) NOT NULL, \n"
    "\tpid INTEGER, \n"
    "\tpgid INTEGER, \n"
    "\tpid_start_ticks BIGINT, \n"
    "\tport INTEGER, \n"
    "\tendpoint TEXT, \n"
    "\tstarted_at DOUBLE, \n"
    "\tstopped_at DOUBLE, \n"
    "\tlast_health_check DOUBLE, \n"
    "\tlast_response_time DOUBLE, \n"
    "\trestart_count INTEGER NOT NULL, \n"
    "\tlast_exit_code INTEGER, \n"
    "\tlast_error TEXT, \n"
    "\tstderr_tail TEXT NOT NULL, \n"
    "\towner VARCHAR(64), \n"
    "\tupdated_at DOUBLE NOT NULL, \n"
    "\tCONSTRAINT pk_instances PRIMARY KEY (id), \n"
    "\tCONSTRAINT fk_instances_server_servers FOREIGN KEY(server) "
    "REFERENCES servers (slug) ON DELETE CASCADE\n"
    ")",
    "CREATE INDEX ix_instances_server ON instances (server)",
    "CREATE TABLE alembic_version (\n"
    "\tversion_num VARCHAR(32) NOT NULL, \n"
    "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
    ")",
)


def prepare_sqlite_file(database: str) -> None:
    """Create the registry file 0600 (it holds secrets) in a 0700 directory if it is new.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode. An existing parent
    directory is left alone (it may be a shared one); an existing file is tightened.
    """
    if database == ":memory:":
        return
    path = Path(database)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        path.parent.chmod(0o700)  # mkdir's mode is filtered by the umask
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)


def connect(database: str) -> sqlite3.Connection:
    """A connection with the registry's pragmas, opening no transaction by itself.

    The store says where each transaction begins (``BEGIN IMMEDIATE`` for a write, so it waits
    for the write lock up front instead of failing to upgrade a read lock halfway).
    """
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        for pragma in SQLITE_PRAGMAS:
            connection.execute(pragma)
    except BaseException:
        connection.close()
        raise
    return connection


def bring_to_head(connection: sqlite3.Connection, database: str) -> None:
    """Create the schema in an empty database, or migrate one that is not at head."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        at_head = "alembic_version" in tables and connection.execute(
            "SELECT version_num FROM alembic_version"
        ).fetchall() == [(HEAD_REVISION,)]
        if not tables:
            for statement in HEAD_SCHEMA:
                connection.execute(statement)
            connection.execute("INSERT INTO alembic_version VALUES (?)", (HEAD_REVISION,))
            at_head = True
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    if not at_head:
        # Imported here: only a registry that needs migrating pays for SQLAlchemy and alembic.
        from roundhouse.store.engine import migrate_sqlite

        migrate_sqlite(database)
