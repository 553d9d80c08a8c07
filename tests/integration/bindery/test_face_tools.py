"""All 14 tools through the official SDK client over stdio, in both protocol eras, against the
face launching a real backend on a real SQLite file."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters

from .face import backend_url, exercise_all_tools, face_env, rest_snapshot

MODES = ["legacy", "2026-07-28"]

# docs/BINDERY.md: (readOnly, idempotent, destructive)
ANNOTATIONS = {
    "create_task": (False, False, False),
    "get_task": (True, True, False),
    "update_task": (False, True, False),
    "delete_task": (False, True, True),
    "list_tasks": (True, True, False),
    "search_tasks": (True, True, False),
    "complete_task": (False, True, False),
    "add_subtask": (False, False, False),
    "get_task_tree": (True, True, False),
    "add_dependency": (False, True, False),
    "remove_dependency": (False, True, True),
    "get_ready_tasks": (True, True, False),
    "add_comment": (False, False, False),
    "get_stats": (True, True, False),
}


def face_params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "roundhouse.bindery.face"], env=env
    )


@pytest.mark.parametrize("mode", MODES)
async def test_all_fourteen_tools_work_and_match_their_output_schemas(tmp_path: Path, mode: str):
    env = face_env(tmp_path)
    async with Client(face_params(env), mode=mode) as client:
        tools = (await client.list_tools()).tools
        assert {tool.name for tool in tools} == set(ANNOTATIONS)
        for tool in tools:
            hints = tool.annotations
            assert hints is not None
            assert (hints.read_only_hint, hints.idempotent_hint, hints.destructive_hint) == (
                ANNOTATIONS[tool.name]
            ), tool.name
            assert tool.input_schema["type"] == "object"
            assert tool.output_schema is not None
        survivor = await exercise_all_tools(client, {t.name: t.output_schema or {} for t in tools})
        snapshot = await rest_snapshot(backend_url(env))
        assert [task["id"] for task in snapshot["tasks"]] == [survivor]


async def test_reads_are_cached_until_a_mutation(tmp_path: Path):
    env = face_env(tmp_path)
    async with Client(face_params(env), mode="legacy") as client:
        first = await client.call_tool("create_task", {"title": "one"})
        assert not first.is_error
        before = (await client.call_tool("get_stats", {})).structured_content
        assert before is not None and before["total"] == 1
        # A write that does not go through the face: the cached read does not see it ...
        async with httpx.AsyncClient(base_url=backend_url(env), trust_env=False) as http:
            assert (await http.post("/api/tasks", json={"title": "behind"})).status_code == 201
        cached = (await client.call_tool("get_stats", {})).structured_content
        assert cached == before
        # ... until a mutation through the face empties the cache.
        await client.call_tool("create_task", {"title": "two"})
        after = (await client.call_tool("get_stats", {})).structured_content
        assert after is not None and after["total"] == 3
