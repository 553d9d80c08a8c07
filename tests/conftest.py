"""Shared fixtures. Each part of the house keeps its fixtures in its own marked section."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# defaults: a fresh data dir gets the bundled Bindery server, which most tests do not want (it is
# one more process per gateway). Off for every test and every gateway a test spawns; the tests
# of the default deployment turn it on explicitly.
# ---------------------------------------------------------------------------------------------
import os as _defaults_os

_defaults_os.environ.setdefault("ROUNDHOUSE_BINDERY", "false")

# ---------------------------------------------------------------------------------------------
# store: a real registry on SQLite (a file in tmp_path) and on PostgreSQL (one fresh schema per
# test). Postgres is looked for at ROUNDHOUSE_TEST_POSTGRES_URL, else 127.0.0.1:5432/test as
# user postgres, then root. Absent, its tests are skipped with a loud reason, unless
# ROUNDHOUSE_REQUIRE_SERVICES=1 (CI), which turns the skip into a failure.
# ---------------------------------------------------------------------------------------------
import asyncio as _store_asyncio
import os as _store_os
import uuid as _store_uuid
from collections.abc import AsyncIterator as _StoreAsyncIterator
from concurrent.futures import ThreadPoolExecutor as _StoreThreadPool
from dataclasses import dataclass as _store_dataclass
from pathlib import Path as _StorePath

import pytest

from roundhouse.store import Store as _Store

_STORE_PG_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


@_store_dataclass(frozen=True)
class StoreTarget:
    """Where a test's registry lives: what ``Store.open(url, schema=schema)`` needs."""

    backend: str
    url: str
    schema: str | None = None


async def _store_probe_postgres() -> tuple[str | None, str]:
    import asyncpg

    configured = _store_os.environ.get("ROUNDHOUSE_TEST_POSTGRES_URL")
    errors = []
    for url in (configured,) if configured else _STORE_PG_CANDIDATES:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        await conn.close()
        return url, ""
    return None, "; ".join(errors)


@pytest.fixture(scope="session")
def store_postgres_url() -> str:
    """A reachable Postgres URL, or a skip (a failure when services are required)."""
    # A thread of its own: an async fixture may be asking, with its event loop running.
    with _StoreThreadPool(max_workers=1) as pool:
        url, why = pool.submit(_store_asyncio.run, _store_probe_postgres()).result()
    if url is None:
        message = (
            "PostgreSQL (ROUNDHOUSE_TEST_POSTGRES_URL, else 127.0.0.1:5432 database 'test') is "
            f"not reachable, so the store's Postgres tests did NOT run ({why})."
        )
        if _store_os.environ.get("ROUNDHOUSE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store_target(
    request: pytest.FixtureRequest, tmp_path: _StorePath
) -> _StoreAsyncIterator[StoreTarget]:
    """An empty registry location on each backend; the Postgres schema is dropped after."""
    if request.param == "sqlite":
        yield StoreTarget("sqlite", f"sqlite:///{tmp_path / 'data' / 'registry.db'}")
        return
    import asyncpg

    url = request.getfixturevalue("store_postgres_url")
    schema = f"rh_test_{_store_uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield StoreTarget("postgresql", url, schema)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.fixture
async def store(store_target: StoreTarget) -> _StoreAsyncIterator[_Store]:
    """An open, migrated, empty :class:`roundhouse.store.Store` on each backend, as
    ``Store.open`` picks it: the stdlib store on SQLite, the SQLAlchemy one on Postgres."""
    async with _Store.connect(store_target.url, schema=store_target.schema) as opened:
        yield opened


# --------------------------------------------------------------------------------- end store
