"""Helpers for tests of the Bindery MCP face: its environment, a raw JSON-RPC pipe to it, the
backend's REST view of the data, and the processes it leaves (or must not leave) behind."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import psutil

FACE = [sys.executable, "-m", "roundhouse.bindery.face"]
BACKEND = [sys.executable, "-m", "roundhouse.bindery.backend"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def face_env(tmp_path: Path, **extra: Any) -> dict[str, str]:
    """The face's settings for a test: its own database and a free port for the backend."""
    env = {
        "BINDERY_DB": str(tmp_path / "bindery.db"),
        "BINDERY_PORT": str(free_port()),
        "BINDERY_STARTUP_TIMEOUT": "60",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def backend_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['BINDERY_PORT']}"


def backends_of(db: str) -> list[psutil.Process]:
    """Live backend processes serving ``db`` (its path is unique to a test)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if (
            "roundhouse.bindery.backend" in cmdline
            and db in cmdline
            and process.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(process)
    return found


async def rest_snapshot(url: str) -> dict[str, Any]:
    """Everything the backend holds, through its REST API: tasks (paged), comments, stats."""
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        tasks: list[dict[str, Any]] = []
        while True:
            page = (
                await http.get("/api/tasks", params={"limit": 200, "offset": len(tasks)})
            ).json()
            tasks.extend(page["items"])
            if len(tasks) >= page["total"] or not page["items"]:
                break
        comments = {
            task["id"]: (await http.get(f"/api/tasks/{task['id']}/comments")).json()["items"]
            for task in tasks
        }
        stats = (await http.get("/api/stats")).json()
    return {"tasks": sorted(tasks, key=lambda t: t["id"]), "comments": comments, "stats": stats}


class RawFace:
    """The face as a child process, spoken to line by line; answers are matched by id."""

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self._ids = itertools.count(1000)
        self._waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.unmatched: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], stderr_path: Path) -> RawFace:
        with open(stderr_path, "wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *FACE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, **env},
                limit=64 << 20,
            )
        return cls(process, stderr_path)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = orjson.loads(line)
            future = self._waiting.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self.unmatched.append(message)

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(orjson.dumps(message) + b"\n")

    def expect(self, request_id: Any) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 60
    ) -> dict[str, Any]:
        request_id = next(self._ids)
        answer = self.expect(request_id)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return await asyncio.wait_for(answer, timeout)

    async def call(self, name: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
        answer = await self.request("tools/call", {"name": name, "arguments": arguments}, **kw)
        return dict(answer["result"])

    async def initialize(self) -> dict[str, Any]:
        answer = await self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return dict(answer["result"])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def close(self, timeout: float = 20) -> int:
        """Close stdin and wait for the exit; kill (and fail) if it does not come."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"the face did not exit within {timeout}s of stdin EOF") from None
        finally:
            await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()


class _Checked:
    """Calls tools (their names behind ``prefix``) and checks every result against the tool's
    own output schema and its text twin."""

    def __init__(self, client: Any, schemas: dict[str, dict[str, Any]], prefix: str) -> None:
        self.client = client
        self.schemas = schemas
        self.prefix = prefix
        self.called: set[str] = set()

    async def __call__(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.client.call_tool(self.prefix + name, arguments)
        assert not result.is_error, f"{name}: {result.content[0].text}"
        structured = result.structured_content
        assert isinstance(structured, dict)
        jsonschema.validate(structured, self.schemas[self.prefix + name])
        assert orjson.loads(result.content[0].text) == structured
        self.called.add(name)
        return structured


async def exercise_all_tools(
    client: Any, schemas: dict[str, dict[str, Any]], prefix: str = ""
) -> int:
    """Call each of the 14 tools at least once, checking what they return; the id of the one
    task left at the end."""
    call = _Checked(client, schemas, prefix)
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
    gone = await client.call_tool(prefix + "get_task", {"task_id": docs["id"]})
    assert gone.is_error and "not found" in gone.content[0].text
    assert len(call.called) == 14
    return int(review["id"])
