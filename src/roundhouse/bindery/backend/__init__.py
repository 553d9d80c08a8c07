"""The Bindery backend: the HTTP service that owns the task database.

``roundhouse bindery serve --port P --db PATH|URL`` (or ``python -m roundhouse.bindery.backend``)
serves the REST API and JSON-RPC endpoint of ``docs/BINDERY.md`` over SQLite or Postgres.

The parts, from the wire down:

- :mod:`.http` the REST face and HTTP edge (raw ASGI), :mod:`.rpc` the JSON-RPC face;
- :mod:`.service` the methods both faces call, :mod:`.models` what their params must be;
- :mod:`.operations` the SQL of each operation, as generators without I/O;
- :mod:`.database` where they run (a thread for SQLite, asyncpg for Postgres), :mod:`.pool`
  the connection pool and its figures, :mod:`.monitor` what those figures mean;
- :mod:`.migrations` the schema's steps, :mod:`.schema` the schema they arrive at;
- :mod:`.serve` listening and the shutdown order.
"""

from __future__ import annotations

from roundhouse.bindery.backend.database import Database
from roundhouse.bindery.backend.errors import BinderyError
from roundhouse.bindery.backend.pool import PoolLimits
from roundhouse.bindery.backend.serve import running, serve
from roundhouse.bindery.backend.service import METHODS, Bindery

__all__ = ["METHODS", "Bindery", "BinderyError", "Database", "PoolLimits", "running", "serve"]
