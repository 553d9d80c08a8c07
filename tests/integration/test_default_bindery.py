"""A fresh data dir serves Bindery: deployed as ``bindery``, its tools on ``/mcp``, its data in
the data dir; removed, it stays removed across restarts."""

from __future__ import annotations

from pathlib import Path

from mcp import Client

from roundhouse.manager import AsyncManager

from .conftest import make_settings, wait_state
from .served import serve


async def test_a_fresh_gateway_serves_bindery_and_a_removal_sticks(tmp_path: Path) -> None:
    async with serve(tmp_path, bindery=True) as served:
        await wait_state(served.manager, "bindery", "running", timeout=60)
        await served.catalogued("bindery", timeout=30)
        async with Client(served.mcp(), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"bindery__create_task", "bindery__get_ready_tasks"} <= names
            created = await client.call_tool("bindery__create_task", {"title": "first light"})
            assert not created.is_error, created
            task = created.structured_content
            assert task is not None and task["title"] == "first light"
            fetched = await client.call_tool("bindery__get_task", {"task_id": task["id"]})
            assert fetched.structured_content == task
        assert (served.manager.settings.data_dir / "bindery" / "bindery.db").exists()
        await served.manager.delete_server("bindery")
    async with AsyncManager(make_settings(tmp_path, bindery=True)) as manager:
        assert await manager.list_servers() == []


async def test_the_setting_off_deploys_nothing(tmp_path: Path) -> None:
    async with AsyncManager(make_settings(tmp_path, bindery=False)) as manager:
        assert await manager.list_servers() == []
