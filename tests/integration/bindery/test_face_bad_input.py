"""Bad and hostile tool input through the SDK client: a clear tool error, and nothing changed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from .face import BACKEND, backend_url, face_env, free_port, rest_snapshot


def face_params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "roundhouse.bindery.face"], env=env
    )


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"status": value}
    return value


async def error_text(client: Client, name: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(name, arguments)
    assert result.is_error, f"{name}({str(arguments)[:80]}) did not fail"
    assert result.structured_content is None
    return str(result.content[0].text)


async def seed(client: Client) -> tuple[int, int]:
    a = await client.call_tool("create_task", {"title": "A"})
    b = await client.call_tool("create_task", {"title": "B"})
    assert a.structured_content is not None and b.structured_content is not None
    a_id, b_id = a.structured_content["id"], b.structured_content["id"]
    linked = await client.call_tool("add_dependency", {"task_id": a_id, "depends_on": b_id})
    assert not linked.is_error
    await client.call_tool("add_comment", {"task_id": a_id, "body": "first"})
    return a_id, b_id


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_bad_input_gets_clear_tool_errors_and_changes_nothing(tmp_path: Path, mode: str):
    env = face_env(tmp_path)
    async with Client(face_params(env), mode=mode) as client:
        a, b = await seed(client)
        before = await rest_snapshot(backend_url(env))

        cases: list[tuple[str, dict[str, Any], str]] = [
            # unknown task ids
            ("get_task", {"task_id": 99_999}, "task 99999 not found"),
            ("update_task", {"task_id": 99_999, "updates": {"title": "x"}}, "not found"),
            ("complete_task", {"task_id": 99_999}, "not found"),
            ("add_comment", {"task_id": 99_999, "body": "x"}, "not found"),
            ("delete_task", {"task_id": 99_999}, "not found"),
            ("add_subtask", {"parent_id": 99_999, "title": "x"}, "not found"),
            ("remove_dependency", {"task_id": a, "depends_on": 99_999}, "does not depend on"),
            # a dependency cycle, and a task depending on itself
            ("add_dependency", {"task_id": b, "depends_on": a}, "cycle"),
            ("add_dependency", {"task_id": a, "depends_on": a}, "itself"),
            # a completion whose dependency is not done
            ("complete_task", {"task_id": a}, "not done"),
            # oversized
            ("create_task", {"title": "x" * 10_000_000}, "title is too long"),
            ("add_comment", {"task_id": a, "body": "y" * 10_001}, "body is too long"),
            ("create_task", {"title": "x", "tags": [f"t{i}" for i in range(21)]}, "at most 20"),
            # SQL metacharacters where an id belongs
            ("get_task", {"task_id": "1 OR 1=1"}, "task_id must be an integer"),
            ("delete_task", {"task_id": "1; DROP TABLE tasks; --"}, "must be an integer"),
            # wrong types
            ("create_task", {"title": 42}, "title must be a string"),
            ("create_task", {"title": "x", "tags": "a,b"}, "tags must be an array"),
            ("create_task", {"title": "x", "status": "finished"}, "status must be one of"),
            ("get_ready_tasks", {"limit": "5"}, "limit must be an integer"),
            ("delete_task", {"task_id": a, "cascade": "yes"}, "cascade must be true or false"),
            ("create_task", {}, "title is required"),
            ("create_task", {"title": "x", "owner": "me"}, "unknown argument"),
            # object parameters that are not objects
            ("update_task", {"task_id": a, "updates": "{not json"}, "is not JSON"),
            ("update_task", {"task_id": a, "updates": "[1, 2]"}, "holds an array"),
            ("update_task", {"task_id": a, "updates": {}}, "at least one field"),
            ("list_tasks", {"filters": 7}, "filters must be an object"),
            # hostile structure
            ("list_tasks", {"filters": nested(50)}, "nested deeper than 10"),
            ("list_tasks", {"filters": orjson.dumps(nested(50)).decode()}, "nested deeper"),
            ("update_task", {"task_id": a, "updates": {"__proto__": {"x": 1}}}, "forbidden key"),
            (
                "update_task",
                {"task_id": a, "updates": '{"constructor": {"prototype": 1}}'},
                "forbidden key",
            ),
            # control characters only: empty once cleaned
            ("create_task", {"title": "\x00\x01\x02 \t"}, "title must not be empty"),
        ]
        unclear = []
        for name, arguments, expected in cases:
            message = await error_text(client, name, arguments)
            if expected not in message or "yyyy" in message or "xxxx" in message:
                unclear.append((name, expected, message[:200]))  # values are never echoed
        assert not unclear
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("drop_tables", {})

        assert await rest_snapshot(backend_url(env)) == before


async def test_sql_metacharacters_in_text_are_stored_verbatim_and_harm_nothing(tmp_path: Path):
    env = face_env(tmp_path)
    hostile = "Robert'); DROP TABLE tasks; -- \" OR 1=1 /* % _"
    async with Client(face_params(env), mode="legacy") as client:
        created = await client.call_tool("create_task", {"title": hostile, "tags": ["a'b"]})
        assert not created.is_error
        found = await client.call_tool("search_tasks", {"query": "'); DROP TABLE tasks; --"})
        assert found.structured_content is not None
        assert [task["title"] for task in found.structured_content["items"]] == [hostile]
        none = await client.call_tool("search_tasks", {"query": "%"})
        assert none.structured_content is not None
        assert [task["title"] for task in none.structured_content["items"]] == [hostile]
    snapshot = await _snapshot_after_exit(env)
    assert [task["title"] for task in snapshot["tasks"]] == [hostile]


async def _snapshot_after_exit(env: dict[str, str]) -> dict[str, Any]:
    """The data as a fresh backend on the same database sees it."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *BACKEND, "--port", str(port), "--db", env["BINDERY_DB"], stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert b"listening" in line, line
        return await rest_snapshot(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        await process.wait()


async def test_production_mode_errors_are_generic(tmp_path: Path):
    env = face_env(tmp_path, MCP_PRODUCTION="true")
    async with Client(face_params(env), mode="legacy") as client:
        assert await error_text(client, "get_task", {"task_id": 99_999}) == "Not found."
        assert await error_text(client, "create_task", {"title": ""}) == "Invalid arguments."
        a = (await client.call_tool("create_task", {"title": "a"})).structured_content
        assert a is not None
        cycle = await error_text(
            client, "add_dependency", {"task_id": a["id"], "depends_on": a["id"]}
        )
        assert cycle == "Invalid arguments."


async def test_development_errors_about_an_unreachable_backend_show_no_address(tmp_path: Path):
    closed = free_port()
    env = face_env(
        tmp_path, MCP_AUTO_LAUNCH_BACKEND="false", BINDERY_URL=f"http://127.0.0.1:{closed}"
    )
    async with Client(face_params(env), mode="legacy") as client:
        message = await error_text(client, "get_stats", {})
        assert message.startswith("Bindery backend unavailable")
        assert "127.0.0.1" not in message and str(closed) not in message
        assert "[IP]" in message  # detailed, but redacted


async def test_the_backend_refuses_what_the_face_let_through_without_changing_anything(
    tmp_path: Path,
):
    """A 4xx from the backend is the caller's mistake: a tool error, the breaker untouched."""
    env = face_env(tmp_path, BINDERY_BREAKER_FAILURES="2")
    async with Client(face_params(env), mode="legacy") as client:
        for _ in range(5):
            await error_text(client, "get_task", {"task_id": 424_242})
        # Five refusals with a threshold of two: the circuit is still closed.
        ok = await client.call_tool("create_task", {"title": "still fine"})
        assert not ok.is_error
