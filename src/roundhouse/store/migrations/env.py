"""Alembic environment for the registry: runs on the connection :class:`Store` hands it.

There is no ``alembic.ini`` and no logging setup here on purpose: the store builds the config in
code and passes an open connection (already inside its transaction) through
``config.attributes["connection"]``, and the application owns logging.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from roundhouse.store.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("the registry migrations run only through roundhouse.store.Store")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
