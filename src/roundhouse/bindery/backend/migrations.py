"""Schema migrations: numbered steps of plain DDL per backend, applied when the database opens.

Lighter than the registry's Alembic setup on purpose: the backend holds no SQLAlchemy engine, and
its start-up time counts (the MCP face launches it on demand). Each step is a fixed record of
what was applied; the test suite checks that every path (fresh, or upgraded from any earlier
step) ends at the schema of :mod:`.schema`.

The version lives in ``bindery_schema_version``. Steps run in the opening transaction; on
Postgres an advisory lock lets one process at a time migrate. A database newer than this code is
refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "PG_MIGRATION_LOCK", "VERSION_TABLE", "Migration", "head"]

VERSION_TABLE = "bindery_schema_version"
#: Key of the Postgres advisory lock held while migrating ("Bindry").
PG_MIGRATION_LOCK = 0x42696E647279


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    about: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


def _shared(*statements: str) -> tuple[str, ...]:
    return statements


_TASK_COLUMNS = """
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    priority VARCHAR(8) NOT NULL,
    tags TEXT NOT NULL,
    parent_id INTEGER,
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32) NOT NULL,
    completed_at VARCHAR(32),
    CONSTRAINT fk_tasks_parent_id_tasks FOREIGN KEY (parent_id)
        REFERENCES tasks (id) ON DELETE CASCADE
"""

_TASKS_AND_LINKS = _shared(
    """CREATE TABLE task_tags (
        task_id INTEGER NOT NULL,
        tag VARCHAR(50) NOT NULL,
        CONSTRAINT pk_task_tags PRIMARY KEY (task_id, tag),
        CONSTRAINT fk_task_tags_task_id_tasks FOREIGN KEY (task_id)
            REFERENCES tasks (id) ON DELETE CASCADE
    )""",
    """CREATE TABLE dependencies (
        task_id INTEGER NOT NULL,
        depends_on INTEGER NOT NULL,
        CONSTRAINT pk_dependencies PRIMARY KEY (task_id, depends_on),
        CONSTRAINT fk_dependencies_task_id_tasks FOREIGN KEY (task_id)
            REFERENCES tasks (id) ON DELETE CASCADE,
        CONSTRAINT fk_dependencies_depends_on_tasks FOREIGN KEY (depends_on)
            REFERENCES tasks (id) ON DELETE CASCADE
    )""",
    "CREATE INDEX ix_tasks_parent_id ON tasks (parent_id)",
    "CREATE INDEX ix_tasks_status ON tasks (status)",
    "CREATE INDEX ix_task_tags_tag ON task_tags (tag)",
    "CREATE INDEX ix_dependencies_depends_on ON dependencies (depends_on)",
)

_COMMENT_COLUMNS = """
    task_id INTEGER NOT NULL,
    author VARCHAR(100) NOT NULL,
    body TEXT NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    CONSTRAINT fk_comments_task_id_tasks FOREIGN KEY (task_id)
        REFERENCES tasks (id) ON DELETE CASCADE
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tasks, their tags and dependencies",
        sqlite=(
            f"CREATE TABLE tasks (id INTEGER NOT NULL CONSTRAINT pk_tasks PRIMARY KEY "
            f"AUTOINCREMENT, {_TASK_COLUMNS})",
            *_TASKS_AND_LINKS,
        ),
        postgresql=(
            f"CREATE TABLE tasks (id SERIAL NOT NULL, {_TASK_COLUMNS}, "
            f"CONSTRAINT pk_tasks PRIMARY KEY (id))",
            *_TASKS_AND_LINKS,
        ),
    ),
    Migration(
        2,
        "comments",
        sqlite=(
            f"CREATE TABLE comments (id INTEGER NOT NULL CONSTRAINT pk_comments PRIMARY KEY "
            f"AUTOINCREMENT, {_COMMENT_COLUMNS})",
            "CREATE INDEX ix_comments_task_id ON comments (task_id)",
        ),
        postgresql=(
            f"CREATE TABLE comments (id SERIAL NOT NULL, {_COMMENT_COLUMNS}, "
            f"CONSTRAINT pk_comments PRIMARY KEY (id))",
            "CREATE INDEX ix_comments_task_id ON comments (task_id)",
        ),
    ),
)


def head() -> int:
    return MIGRATIONS[-1].version
