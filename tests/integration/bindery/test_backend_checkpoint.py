"""WAL checkpoints off the event loop: the checkpointer keeps the WAL bounded under a stream of
writes, empties it on close, and an acknowledged write survives kill -9 whether or not a
checkpoint has moved it into the database file yet."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import httpx

from roundhouse.bindery.backend import Bindery
from roundhouse.bindery.backend.checkpoint import INTERVAL_S, WAL_SIZE_LIMIT
from roundhouse.bindery.backend.database import Database
from tests.integration.bindery.test_backend_process import MODULE, backend


def wal_size(db: Path) -> int:
    try:
        return os.stat(str(db) + "-wal").st_size
    except FileNotFoundError:
        return 0


async def test_serving_connections_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    database = Database(str(tmp_path / "bindery.db"))
    await database.open()
    try:
        async with database.pool.lease() as lease:
            assert lease.connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
            limit = lease.connection.execute("PRAGMA journal_size_limit").fetchone()
            assert limit == (WAL_SIZE_LIMIT,)
    finally:
        await database.close()


async def test_the_checkpointer_keeps_the_wal_bounded_under_a_stream_of_writes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bindery.db"
    database = Database(str(db))
    await database.open()
    bindery = Bindery(database)
    largest = 0
    try:
        # ~25 KiB of WAL per create: 4,000 creates would leave ~100 MB without checkpoints.
        for round_ in range(40):
            await asyncio.gather(
                *(
                    bindery.call("create_task", {"title": f"t{round_}.{n}", "tags": ["a", "b"]})
                    for n in range(100)
                )
            )
            largest = max(largest, wal_size(db))
            await asyncio.sleep(INTERVAL_S / 4)  # let the thread see the WAL between rounds
        checkpointer = database._checkpointer
        assert checkpointer is not None and checkpointer.checkpoints > 0
        await asyncio.sleep(INTERVAL_S * 3)  # the last writes checkpointed too
        await bindery.call("get_stats", {})
        # Each round's WAL was folded in and started over: the file never held the whole run.
        assert largest < 2 * WAL_SIZE_LIMIT, largest
        assert (await bindery.call("get_stats", {}))["total"] == 4000
    finally:
        await database.close()
    assert wal_size(db) == 0  # truncated (or removed) on close
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM task_tags").fetchone() == (8000,)


async def test_acknowledged_writes_survive_kill_9_before_and_after_a_checkpoint(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "bindery.db")
    async with backend(*MODULE, "--db", db) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def create(title: str) -> int:
                response = await client.post("/api/tasks", json={"title": title, "tags": ["k"]})
                assert response.status_code == 201, response.text
                return int(response.json()["id"])

            acknowledged = await asyncio.gather(*(create(f"early {n}") for n in range(200)))
            await asyncio.sleep(INTERVAL_S * 3)  # checkpointed into the database file
            acknowledged += await asyncio.gather(*(create(f"late {n}") for n in range(50)))
        os.kill(process.pid, signal.SIGKILL)  # the late ones are in the WAL only
        assert await process.wait() == -signal.SIGKILL
    async with (
        backend(*MODULE, "--db", db) as (_, url),
        httpx.AsyncClient(base_url=url) as client,
    ):
        listed = (await client.get("/api/tasks", params={"tag": "k", "limit": 200})).json()
        assert listed["total"] == 250
        ids = set(acknowledged)
        assert len(ids) == 250
        for offset in (0, 200):
            page = await client.get("/api/tasks", params={"limit": 200, "offset": offset})
            ids -= {task["id"] for task in page.json()["items"]}
        assert not ids
