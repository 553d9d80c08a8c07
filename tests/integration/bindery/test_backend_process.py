"""The backend as a process: ``python -m roundhouse.bindery.backend`` and ``roundhouse bindery
serve`` with ``--port 0``, a graceful stop on SIGTERM, and acknowledged writes surviving kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.bindery.conftest import Target, dump

LISTENING = re.compile(r"bindery listening on (http://127\.0\.0\.1:\d+)")
ROUNDHOUSE = str(Path(sys.executable).with_name("roundhouse"))
MODULE = (sys.executable, "-m", "roundhouse.bindery.backend")


async def start(*command: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    seen = []
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode()
                if not line:
                    pytest.fail(f"the backend exited before listening: {''.join(seen)}")
                seen.append(line)
                if match := LISTENING.search(line):
                    return process, match.group(1)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise


@contextlib.asynccontextmanager
async def backend(*command: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    process, url = await start(*command)
    try:
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_the_module_and_the_cli_serve_on_a_free_port(tmp_path: Path) -> None:
    db = str(tmp_path / "bindery.db")
    for command in (
        (*MODULE, "--port", "0", "--db", db),
        (ROUNDHOUSE, "bindery", "serve", "--db", db),
    ):
        async with backend(*command) as (_, url), httpx.AsyncClient(base_url=url) as client:
            health = await client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            assert (await client.post("/api/tasks", json={"title": "t"})).status_code == 201
    assert len((await dump(Target("sqlite", db)))["tasks"]) == 2


async def test_sigterm_lets_in_flight_requests_finish_then_exits_cleanly(tmp_path: Path) -> None:
    target = Target("sqlite", str(tmp_path / "bindery.db"))
    async with backend(*MODULE, "--db", target.db) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def create(number: int) -> int | None:
                try:
                    response = await client.post("/api/tasks", json={"title": f"t{number}"})
                except httpx.TransportError:
                    return None  # not accepted: the server had stopped listening
                assert response.status_code == 201, response.text
                return int(response.json()["id"])

            calls = [asyncio.create_task(create(n)) for n in range(40)]
            await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            acknowledged = {task_id for task_id in await asyncio.gather(*calls) if task_id}
        async with asyncio.timeout(20):
            assert await process.wait() == 0
        assert process.stderr is not None
        rest = (await process.stderr.read()).decode()
        assert "Traceback" not in rest
    stored = {row[0] for row in (await dump(target))["tasks"]}
    assert acknowledged <= stored


async def test_acknowledged_creates_survive_kill_9(target: Target) -> None:
    async with backend(*MODULE, "--db", target.db) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def create(number: int) -> int:
                response = await client.post(
                    "/api/tasks", json={"title": f"t{number}", "tags": ["k"]}
                )
                assert response.status_code == 201
                return int(response.json()["id"])

            acknowledged: list[int] = []
            for batch in range(5):
                acknowledged += await asyncio.gather(*(create(batch * 10 + n) for n in range(10)))
        os.kill(process.pid, signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    async with (
        backend(*MODULE, "--db", target.db) as (_, url),
        httpx.AsyncClient(base_url=url) as client,
    ):
        listed = (await client.get("/api/tasks", params={"limit": 200})).json()
        assert listed["total"] == 50
        assert sorted(task["id"] for task in listed["items"]) == sorted(acknowledged)
        assert (await client.get("/api/tasks", params={"tag": "k"})).json()["total"] == 50


async def test_bad_settings_exit_2_and_a_busy_port_exits_1(tmp_path: Path) -> None:
    for args, status, words in [
        (("--db", "mysql://db/x"), 2, "database"),
        (("--db", ":memory:"), 2, "file"),
        (("--db", str(tmp_path / "a.db"), "--port", "70000"), 2, "port"),
    ]:
        process = await asyncio.create_subprocess_exec(
            *MODULE, *args, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == status and words in err.decode(), err
        assert b"Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        process = await asyncio.create_subprocess_exec(
            *MODULE, "--db", str(tmp_path / "b.db"), "--port", port,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1 and b"cannot listen" in err and b"Traceback" not in err


async def test_an_unreachable_postgres_is_a_one_line_error() -> None:
    process = await asyncio.create_subprocess_exec(
        *MODULE, "--db", "postgresql://nobody:secret@127.0.0.1:1/none",
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1, err
    assert b"cannot be opened" in err and b"secret" not in err and b"Traceback" not in err
