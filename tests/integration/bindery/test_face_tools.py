"""All 14 tools through the official SDK client over stdio, in both protocol eras, against the
face launching a real backend on a real SQLite file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from mcp import Client, StdioServerParameters

from .face import backend_url, face_env, rest_snapshot

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


class Checked:
    """Calls tools and checks every result against the tool's own output schema."""

    def __init__(self, client: Client, schemas: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.schemas = schemas
        self.called: set[str] = set()

    async def __call__(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.client.call_tool(name, arguments)
        assert not result.is_error, f"{name}: {result.content[0].text}"
        structured = result.structured_content
        assert isinstance(structured, dict)
        jsonschema.validate(structured, self.schemas[name])
        assert orjson.loads(result.content[0].text) == structured
        self.called.add(name)
        return structured


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
        call = Checked(client, {tool.name: tool.output_schema or {} for tool in tools})

        docs = await call("create_task", title="Write docs", tags=["docs", "alpha"])
        assert docs["tags"] == ["alpha", "docs"] and docs["status"] == "todo"
        assert (await call("get_task", task_id=docs["id"]))["title"] == "Write docs"
        # updates as a JSON string, as some clients send object parameters
        updated = await call("update_task", task_id=docs["id"], updates='{"status": "in_progress"}')
        assert updated["status"] == "in_progress"
        sub = await call("add_subtask", parent_id=docs["id"], title="Outline", priority="high")
        assert sub["parent_id"] == docs["id"]
        review = await call("create_task", title="Review docs", description="line 1\nline 2")
        linked = await call("add_dependency", task_id=docs["id"], depends_on=review["id"])
        assert linked["depends_on"] == [review["id"]]
        tree = await call("get_task_tree", task_id=docs["id"], max_depth=3)
        assert [child["id"] for child in tree["children"]] == [sub["id"]]
        ready = await call("get_ready_tasks", limit=50)
        assert review["id"] in [task["id"] for task in ready["items"]]
        found = await call("search_tasks", query="docs")
        assert {docs["id"], review["id"]} <= {task["id"] for task in found["items"]}
        page = await call("list_tasks", filters={"status": "todo"}, limit=10)
        assert {task["id"] for task in page["items"]} == {sub["id"], review["id"]}
        top = await call("list_tasks", filters='{"parent_id": null}')
        assert sub["id"] not in {task["id"] for task in top["items"]}
        comment = await call("add_comment", task_id=docs["id"], body="Looks good")
        assert comment["author"] == "assistant" and comment["task_id"] == docs["id"]
        done = await call("complete_task", task_id=review["id"])
        assert done["status"] == "done" and done["completed_at"]
        unlinked = await call("remove_dependency", task_id=docs["id"], depends_on=review["id"])
        assert unlinked["depends_on"] == []
        stats = await call("get_stats")
        assert stats["total"] == 3 and stats["comments"] == 1
        deleted = await call("delete_task", task_id=docs["id"], cascade=True)
        assert deleted == {"deleted": True, "task_id": docs["id"], "cascade": True}
        # A read after a mutation is not served from the cache.
        assert (await call("get_stats"))["total"] == 1
        gone = await client.call_tool("get_task", {"task_id": docs["id"]})
        assert gone.is_error and "not found" in gone.content[0].text

        assert call.called == set(ANNOTATIONS)
        snapshot = await rest_snapshot(backend_url(env))
        assert [task["id"] for task in snapshot["tasks"]] == [review["id"]]


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
