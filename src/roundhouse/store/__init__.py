"""The registry: desired state (server specs) and last known actual state (instances).

SQLite by default, on the standard library (``sqlite.py``); Postgres by URL, on SQLAlchemy Core
(``sqlalchemy.py``). One schema (``schema.py``, and ``sqlite_schema.py`` as SQLite stores it)
with Alembic migrations (``migrations/``) applied when a :class:`Store` opens.
"""

from roundhouse.store.records import InstanceRecord, ServerRecord
from roundhouse.store.store import Store

__all__ = ["InstanceRecord", "ServerRecord", "Store"]
