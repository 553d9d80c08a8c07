"""The registry: desired state (server specs) and last known actual state (instances).

SQLite by default, Postgres by URL; one schema (``schema.py``) with Alembic migrations
(``migrations/``) applied when a :class:`Store` opens.
"""

from roundhouse.store.records import InstanceRecord, ServerRecord
from roundhouse.store.store import Store

__all__ = ["InstanceRecord", "ServerRecord", "Store"]
