"""Bindery's tables, as SQLAlchemy Core metadata: the schema the migrations must arrive at.

The service itself never imports this module: it speaks SQL through :mod:`.database` (one
round trip to a thread per operation on SQLite, asyncpg on Postgres). The metadata is the
readable statement of the schema, and the test that compares a fresh database, an upgraded one
and ``metadata.create_all`` keeps :mod:`.migrations` honest.

- ``tasks``: one row per task; ``tags`` holds the sorted tags as JSON text (what a read returns),
  ``task_tags`` the same tags one per row (what the ``tag`` filter and search use). Times are
  ISO 8601 UTC strings, so both backends store and return the same text.
- ``dependencies``: ``task_id`` waits for ``depends_on``; rows go with either task.
- ``comments``: notes on a task, going with it.

A subtask's ``parent_id`` cascades too: deleting a task with ``cascade=true`` is one DELETE.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table, Text

__all__ = ["comments", "dependencies", "metadata", "task_tags", "tasks"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("tags", Text, nullable=False),
    Column("parent_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE")),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("completed_at", String(32)),
    Index("ix_tasks_parent_id", "parent_id"),
    Index("ix_tasks_status", "status"),
    sqlite_autoincrement=True,
)

task_tags = Table(
    "task_tags",
    metadata,
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(50), primary_key=True),
    Index("ix_task_tags_tag", "tag"),
)

dependencies = Table(
    "dependencies",
    metadata,
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("depends_on", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_dependencies_depends_on", "depends_on"),
)

comments = Table(
    "comments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("author", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_comments_task_id", "task_id"),
    sqlite_autoincrement=True,
)
