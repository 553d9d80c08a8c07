"""Tasks through the gateway, against server-everything's ``simulate-research-query`` (npm).

A task lives in the upstream process that created it, and that process serves every client of
the gateway. So: ``tasks/*`` reach the instance holding the task (even with two instances and a
sessionless 2026-07-28 client), and a client sees only its own tasks — another session can
neither get nor list them, on either endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import eventually, wait_state
from .served import Served, open_session, serve_everything

MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
INVALID_PARAMS = -32602
PATHS = ["/mcp", "/servers/everything/mcp"]


@pytest.fixture
async def everything(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_everything(tmp_path) as served:
        yield served


def tool_name(path: str) -> str:
    return "everything__simulate-research-query" if path == "/mcp" else "simulate-research-query"


class Legacy:
    """One legacy session on one endpoint, speaking raw JSON-RPC."""

    def __init__(self, http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        self.http, self.path, self.headers = http, path, headers
        self.ids = 0

    @classmethod
    async def open(cls, http: httpx.AsyncClient, path: str) -> Legacy:
        headers = await open_session(http, path)
        return cls(http, path, {**headers, "Content-Type": "application/json"})

    async def rpc(self, method: str, params: Any = None) -> dict[str, Any]:
        self.ids += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            message["params"] = params
        answer = await self.http.post(self.path, content=json.dumps(message), headers=self.headers)
        assert answer.status_code == 200, answer.text
        return _json(answer)

    async def start_task(self, topic: str) -> str:
        answer = await self.rpc(
            "tools/call",
            {
                "name": tool_name(self.path),
                "arguments": {"topic": topic, "ambiguous": False},
                "task": {"ttl": 60000},
            },
        )
        return str(answer["result"]["task"]["taskId"])


def _json(answer: httpx.Response) -> dict[str, Any]:
    text = answer.text
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        text = data[-1]
    result: dict[str, Any] = json.loads(text)
    return result


@pytest.mark.parametrize("path", PATHS)
async def test_a_task_is_created_polled_and_its_result_fetched(everything, path):
    async with httpx.AsyncClient(base_url=everything.url, timeout=60) as http:
        session = await Legacy.open(http, path)
        task_id = await session.start_task("rails")
        status = await session.rpc("tasks/get", {"taskId": task_id})
        assert status["result"]["taskId"] == task_id
        assert status["result"]["status"] in ("working", "completed")
        result = await session.rpc("tasks/result", {"taskId": task_id})
        assert "Research Report: rails" in result["result"]["content"][0]["text"]
        done = await session.rpc("tasks/get", {"taskId": task_id})
        assert done["result"]["status"] == "completed"


@pytest.mark.parametrize("path", PATHS)
async def test_a_session_sees_only_its_own_tasks(everything, path):
    async with httpx.AsyncClient(base_url=everything.url, timeout=60) as http:
        mine, theirs = await Legacy.open(http, path), await Legacy.open(http, path)
        my_task = await mine.start_task("mine")
        their_task = await theirs.start_task("theirs")
        listed = await mine.rpc("tasks/list", {})
        assert [t["taskId"] for t in listed["result"]["tasks"]] == [my_task]
        # Another session asking for my task gets the same answer as for a task that never was.
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            stolen = await theirs.rpc(method, {"taskId": my_task})
            assert stolen["error"]["code"] == INVALID_PARAMS, stolen
            assert "unknown task" in stolen["error"]["message"]
        # ...while its own task is there, and mine still answers me.
        assert (await theirs.rpc("tasks/get", {"taskId": their_task}))["result"]["taskId"]
        assert (await mine.rpc("tasks/get", {"taskId": my_task}))["result"]["taskId"] == my_task


async def test_the_per_server_endpoint_does_not_reach_tasks_of_the_aggregate_one(everything):
    async with httpx.AsyncClient(base_url=everything.url, timeout=60) as http:
        aggregate = await Legacy.open(http, "/mcp")
        task_id = await aggregate.start_task("scoped")
        one = await Legacy.open(http, "/servers/everything/mcp")
        assert (await one.rpc("tasks/list", {}))["result"]["tasks"] == []
        answer = await one.rpc("tasks/get", {"taskId": task_id})
        assert answer["error"]["code"] == INVALID_PARAMS


async def test_a_task_can_be_cancelled_by_its_owner(everything):
    async with httpx.AsyncClient(base_url=everything.url, timeout=60) as http:
        session = await Legacy.open(http, "/mcp")
        task_id = await session.start_task("cancel me")
        cancelled = await session.rpc("tasks/cancel", {"taskId": task_id})
        assert "error" not in cancelled, cancelled
        status = await session.rpc("tasks/get", {"taskId": task_id})
        assert status["result"]["status"] == "cancelled"


@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"taskId": 42},
        {"taskId": None},
        {"taskId": ["a"]},
        {"taskId": "x" * 100_000},
        {"taskId": "../../etc/passwd"},
        {"taskId": "nope"},
    ],
)
async def test_a_bad_task_id_is_invalid_params_and_disturbs_nothing(everything, params):
    async with httpx.AsyncClient(base_url=everything.url, timeout=60) as http:
        session = await Legacy.open(http, "/mcp")
        task_id = await session.start_task("undisturbed")
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            answer = await session.rpc(method, params)
            assert answer["error"]["code"] == INVALID_PARAMS, (method, answer)
        status = await session.rpc("tasks/get", {"taskId": task_id})
        assert status["result"]["taskId"] == task_id


async def test_a_sessionless_client_reaches_its_task_on_the_instance_that_holds_it(everything):
    """Two instances, no session to stick to: without routing by task, about half of these
    tasks/get calls would land on the instance that never heard of the task."""
    await everything.manager.scale("everything", 2)
    await wait_state(everything.manager, "everything", "running", ordinal=1, timeout=30)
    await eventually(
        lambda: len(everything.manager.supervisor.ready("everything")) == 2,
        timeout=30,
        what="two ready instances",
    )

    def body(request_id: int, method: str, params: dict[str, Any]) -> str:
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"},
        }
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        message["params"] = {**params, "_meta": meta}
        return json.dumps(message)

    async with httpx.AsyncClient(base_url=everything.url, timeout=60) as http:
        tool = "everything__simulate-research-query"
        headers = {
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            "MCP-Protocol-Version": MODERN,
        }
        call_headers = {**headers, "Mcp-Method": "tools/call", "Mcp-Name": tool}
        arguments = {"topic": "two", "ambiguous": False}
        created = await http.post(
            "/mcp",
            content=body(1, "tools/call", {"name": tool, "arguments": arguments, "task": {}}),
            headers=call_headers,
        )
        task = _json(created)["result"]["task"]
        task_id = task["taskId"]
        get_headers = {**headers, "Mcp-Method": "tasks/get"}
        answers = await asyncio.gather(
            *(
                http.post(
                    "/mcp", content=body(n, "tasks/get", {"taskId": task_id}), headers=get_headers
                )
                for n in range(2, 22)
            )
        )
        for answer in answers:
            assert _json(answer)["result"]["taskId"] == task_id, answer.text
