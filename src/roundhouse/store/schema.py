"""The registry's tables, one schema for SQLite and Postgres (SQLAlchemy Core).

``servers`` is the desired state: one row per spec, the spec itself as JSON text (secrets in
clear; the SQLite file is 0600 and Postgres is the operator's vault). ``instances`` is the last
known actual state, written by the supervisor; its rows go with their server (``ON DELETE
CASCADE``).

The migrations in ``migrations/versions`` create exactly these tables; a change here needs a new
migration there. Types are the portable ones: JSON travels as ``Text`` so both backends store the
same bytes, and times are ``Double`` seconds since the epoch.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["instances", "metadata", "servers"]

#: Constraint names follow one convention, so a later migration can refer to them by name.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

servers = Table(
    "servers",
    metadata,
    Column("slug", String(40), primary_key=True),
    #: ``spec_to_storage(spec)`` as JSON text.
    Column("spec", Text, nullable=False),
    Column("desired_instances", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column(
        "server",
        String(40),
        ForeignKey("servers.slug", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ordinal", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("health", String(16), nullable=False),
    Column("pid", Integer),
    Column("pgid", Integer),
    Column("pid_start_ticks", BigInteger),
    Column("port", Integer),
    Column("endpoint", Text),
    Column("started_at", Double),
    Column("stopped_at", Double),
    Column("last_health_check", Double),
    Column("last_response_time", Double),
    Column("restart_count", Integer, nullable=False),
    Column("last_exit_code", Integer),
    Column("last_error", Text),
    #: The last stderr lines as a JSON list of strings.
    Column("stderr_tail", Text, nullable=False),
    Column("owner", String(64)),
    Column("updated_at", Double, nullable=False),
    Index("ix_instances_server", "server"),
)
