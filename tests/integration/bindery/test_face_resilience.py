"""The face when its backend dies: the breaker opens, calls fail fast and clearly, the backend is
restarted, the breaker closes after a probe, and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson

from .face import BACKEND, RawFace, backend_url, backends_of, face_env, free_port, rest_snapshot

WORKERS = 8


def breaker_changes(stderr: str) -> list[tuple[str, str]]:
    changes = []
    for line in stderr.splitlines():
        if line.startswith("{") and '"event":"breaker"' in line:
            event = orjson.loads(line)
            changes.append((event["from"], event["to"]))
    return changes


async def test_killing_the_backend_under_load_opens_the_breaker_then_recovers(tmp_path: Path):
    # The default recovery timeout (60 s) would be far longer than the test: calls can only
    # resume quickly because the restarted backend's health check lets the breaker probe at once.
    env = face_env(tmp_path, BINDERY_BREAKER_FAILURES=5, BINDERY_BREAKER_RECOVERY=60)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    acknowledged: list[str] = []
    outcomes: list[tuple[float, bool, str]] = []  # (time, ok, error text)
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        count = 0
        while not stop.is_set():
            title = f"w{n}-{count}"
            count += 1
            result = await face.call("create_task", {"title": title}, timeout=60)
            now = time.monotonic()
            if result["isError"]:
                outcomes.append((now, False, result["content"][0]["text"]))
                await asyncio.sleep(0.01)
            else:
                assert result["structuredContent"]["title"] == title
                acknowledged.append(title)
                outcomes.append((now, True, ""))

    try:
        await face.initialize()
        await face.call("get_stats", {})  # the backend is up
        (backend,) = backends_of(env["BINDERY_DB"])
        workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
        await asyncio.sleep(1.0)
        assert len(acknowledged) > WORKERS, "no load before the kill"

        killed = time.monotonic()
        os.kill(backend.pid, signal.SIGKILL)

        async def failed_fast() -> float:
            while True:
                for at, ok, text in outcomes:
                    if at > killed and not ok and "retry in" in text:
                        return at - killed
                await asyncio.sleep(0.01)

        opened_after = await asyncio.wait_for(failed_fast(), 10)
        assert opened_after < 1.0, f"the breaker opened {opened_after:.2f}s after the kill"
        refusals = [text for at, ok, text in outcomes if at > killed and not ok]
        assert all(text.startswith("Bindery backend unavailable") for text in refusals), refusals

        async def recovered() -> float:
            while True:
                if any(ok for at, ok, _ in outcomes if at > killed + opened_after):
                    return time.monotonic() - killed
                await asyncio.sleep(0.02)

        back_after = await asyncio.wait_for(recovered(), 30)
        await asyncio.sleep(1.0)  # more load on the restarted backend
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 60)

        (restarted,) = backends_of(env["BINDERY_DB"])
        assert restarted.pid != backend.pid
        tail = [ok for at, ok, _ in outcomes if at > killed + back_after + 0.5]
        assert tail and all(tail), "calls still fail after the recovery"
        changes = breaker_changes(face.stderr())
        assert changes[:1] == [("closed", "open")]
        assert ("open", "half_open") in changes and changes[-1] == ("half_open", "closed")

        snapshot = await rest_snapshot(backend_url(env))
        stored = {task["title"] for task in snapshot["tasks"]}
        lost = [title for title in acknowledged if title not in stored]
        assert not lost, f"{len(lost)} acknowledged creates are missing"
        assert await face.close() == 0
    finally:
        await face.kill()


async def test_without_auto_launch_a_missing_backend_gives_clear_errors_until_one_starts(
    tmp_path: Path,
):
    port = free_port()
    env = face_env(
        tmp_path,
        MCP_AUTO_LAUNCH_BACKEND="false",
        BINDERY_URL=f"http://127.0.0.1:{port}",
        BINDERY_BREAKER_FAILURES=3,
        BINDERY_BREAKER_RECOVERY=60,
    )
    face = await RawFace.start(env, tmp_path / "face.stderr")
    backend: asyncio.subprocess.Process | None = None
    try:
        await face.initialize()  # the face serves with no backend at all
        texts = []
        for _ in range(5):
            result = await face.call("get_stats", {})
            assert result["isError"]
            texts.append(result["content"][0]["text"])
        assert all(text.startswith("Bindery backend unavailable") for text in texts)
        assert "retry in" in texts[-1]  # the circuit opened after three failures
        assert backends_of(env["BINDERY_DB"]) == []  # nothing was launched

        backend = await asyncio.create_subprocess_exec(
            *BACKEND,
            "--port",
            str(port),
            "--db",
            env["BINDERY_DB"],
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def works() -> dict[str, Any]:
            while True:
                result = await face.call("create_task", {"title": "after start"})
                if not result["isError"]:
                    return result
                await asyncio.sleep(0.2)

        # Well before the 60 s recovery timeout: the face watches /health while open.
        started = time.monotonic()
        created = await asyncio.wait_for(works(), 30)
        assert time.monotonic() - started < 20
        assert created["structuredContent"]["title"] == "after start"
        assert await face.close() == 0
    finally:
        await face.kill()
        if backend is not None and backend.returncode is None:
            backend.terminate()
            await backend.wait()


async def test_a_backend_that_cannot_start_gives_tool_errors_not_a_dead_face(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database's directory should be")
    env = face_env(tmp_path, BINDERY_DB=str(blocker / "bindery.db"), BINDERY_STARTUP_TIMEOUT=5)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    try:
        await face.initialize()
        result = await face.call("get_stats", {}, timeout=30)
        assert result["isError"]
        assert result["content"][0]["text"].startswith("Bindery backend unavailable")
        assert (await face.request("ping"))["result"] == {}
        assert "cannot create the database's directory" in face.stderr()
    finally:
        await face.kill()
