"""Fixtures for the Bindery backend: an empty database on each backend (SQLite file; Postgres
schema of its own, dropped after), the backend served in-process on 127.0.0.1 port 0, and a dump
of every row to show that a refused request changed nothing."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from roundhouse.bindery.backend import Bindery, PoolLimits, running

TABLES = ("tasks", "task_tags", "dependencies", "comments")


@dataclass(frozen=True)
class Target:
    backend: str
    db: str  # what --db takes


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "data" / "bindery.db"))
        return
    import asyncpg

    url = request.getfixturevalue("store_postgres_url")
    schema = f"bindery_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield Target("postgresql", f"{url}?search_path={schema}")
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@dataclass
class Served:
    url: str
    client: httpx.AsyncClient
    bindery: Bindery
    target: Target

    async def rpc(self, method: str, params: Any = None, request_id: Any = 1) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        response = await self.client.post("/rpc", json=message)
        assert response.status_code == 200, response.text
        return response.json()

    async def create(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("title", "a task")
        response = await self.client.post("/api/tasks", json=fields)
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    async def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        return await dump(self.target)


async def dump(target: Target) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read with the driver directly (not through the backend)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    if target.backend == "sqlite":
        connection = sqlite3.connect(target.db)
        try:
            for table in TABLES:
                found = connection.execute(f"SELECT * FROM {table}").fetchall()
                rows[table] = sorted(found, key=repr)
        finally:
            connection.close()
        return rows
    import asyncpg

    conn = await asyncpg.connect(target.db)
    try:
        for table in TABLES:
            found = await conn.fetch(f"SELECT * FROM {table}")
            rows[table] = sorted((tuple(record) for record in found), key=repr)
    finally:
        await conn.close()
    return rows


@pytest.fixture
async def served(target: Target) -> AsyncIterator[Served]:
    async with served_with(target) as result:
        yield result


def served_with(target: Target, limits: PoolLimits | None = None) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[Served]:
        async with (
            running(target.db, limits=limits) as (url, bindery),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield Served(url, client, bindery, target)

    return serving()
