"""Group commit on SQLite: writes that arrive together share one transaction, yet each caller
gets its own result or its own error, and a write that fails leaves the others committed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roundhouse.bindery.backend import running
from roundhouse.bindery.backend.database import Database, Op, Stmt
from roundhouse.bindery.backend.errors import Conflict, NotFound, Unavailable


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(str(tmp_path / "bindery.db"))
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def insert(title: str, task_id: int | None = None) -> Op[int]:
    new_id = yield Stmt(
        "INSERT INTO tasks (id, title, description, status, priority, tags, created_at, "
        "updated_at) VALUES (?, ?, '', 'todo', 'normal', '[]', 'now', 'now') RETURNING id",
        (task_id, title),
        "val",
    )
    return int(new_id)


def insert_then_fail(title: str) -> Op[int]:
    yield from insert(title)
    raise NotFound("task 999 not found")


def insert_then_bad_sql(title: str) -> Op[int]:
    yield from insert(title)
    yield Stmt("SELECT * FROM no_such_table", fetch="exec")
    return 0


def titles(database: Database) -> list[str]:
    with sqlite3.connect(database._where) as connection:
        return [row[0] for row in connection.execute("SELECT title FROM tasks ORDER BY id")]


async def test_writes_ready_together_share_one_transaction(database: Database) -> None:
    before = database.pool.acquisitions
    ids = await asyncio.gather(*(database.run(insert(f"t{n}"), write=True) for n in range(10)))
    assert sorted(ids) == list(range(1, 11))
    assert database.pool.acquisitions - before == 1  # one lease, one transaction
    assert titles(database) == [f"t{n}" for n in range(10)]


async def test_a_failing_write_fails_alone_and_leaves_no_trace(database: Database) -> None:
    await database.run(insert("first", task_id=1), write=True)
    ops = [
        insert("good 0"),
        insert_then_fail("rolled back: not found"),
        insert("good 1"),
        insert("duplicate id", task_id=1),  # IntegrityError
        insert_then_bad_sql("rolled back: refused SQL"),
        insert("good 2"),
    ]
    results = await asyncio.gather(
        *(database.run(op, write=True) for op in ops), return_exceptions=True
    )
    assert isinstance(results[1], NotFound)
    assert isinstance(results[3], Conflict)
    assert isinstance(results[4], Unavailable)
    good = [results[0], results[2], results[5]]
    assert all(isinstance(value, int) for value in good)
    assert titles(database) == ["first", "good 0", "good 1", "good 2"]


async def test_a_lone_write_still_fails_with_its_own_error(database: Database) -> None:
    with pytest.raises(NotFound):
        await database.run(insert_then_fail("alone"), write=True)
    assert titles(database) == []
    assert await database.run(insert("after"), write=True) == 1


async def test_a_caller_cancelled_before_its_group_runs_is_left_out(database: Database) -> None:
    kept = asyncio.ensure_future(database.run(insert("kept"), write=True))
    dropped = asyncio.ensure_future(database.run(insert("dropped"), write=True))
    await asyncio.sleep(0)  # both queued; the group runs on the next turn
    dropped.cancel()
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert titles(database) == ["kept"]


async def test_concurrent_creates_over_http_each_get_their_own_task(tmp_path: Path) -> None:
    async with (
        running(str(tmp_path / "bindery.db")) as (url, bindery),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):

        async def create(number: int) -> dict[str, Any]:
            response = await client.post(
                "/api/tasks", json={"title": f"task {number}", "tags": [f"n{number}"]}
            )
            assert response.status_code == 201, response.text
            task: dict[str, Any] = response.json()
            return task

        created = await asyncio.gather(*(create(n) for n in range(200)))
        assert len({task["id"] for task in created}) == 200
        for task in created[::17]:
            stored = (await client.get(f"/api/tasks/{task['id']}")).json()
            assert stored == task
        stats = await bindery.call("get_stats", {})
        assert stats["total"] == 200


async def test_a_caller_cancelled_while_its_group_waits_for_the_writer_lock_is_left_out(
    database: Database,
) -> None:
    assert database._writers is not None
    async with database._writers:  # as the checkpointer holds writes back
        kept = asyncio.ensure_future(database.run(insert("kept"), write=True))
        dropped = asyncio.ensure_future(database.run(insert("dropped"), write=True))
        await asyncio.sleep(0.01)  # the group is formed and waits for the lock
        dropped.cancel()
        await asyncio.sleep(0)
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert titles(database) == ["kept"]
