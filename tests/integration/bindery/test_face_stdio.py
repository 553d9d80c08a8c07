"""The face's stdio loop over a raw pipe: hostile lines, cancellation, both eras, a clean exit."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from .face import RawFace, backends_of, face_env


@pytest.fixture
async def face(tmp_path: Path):
    env = face_env(tmp_path)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    try:
        yield face
    finally:
        await face.kill()


async def test_garbage_lines_get_errors_and_the_face_keeps_serving(face: RawFace):
    await face.initialize()
    face.send_raw(b"this is not json\n")
    face.send_raw(b"\x00\xff\xfe binary\n")
    face.send_raw(b"[1, 2, 3]\n")
    face.send_raw(b'"a string"\n')
    face.send_raw(b'{"jsonrpc": "2.0", "id": {"nested": 1}, "method": "ping"}\n')
    face.send_raw(b"\n   \n")  # blank lines are ignored
    answer = await face.request("ping")
    assert answer["result"] == {}
    errors = [m["error"]["code"] for m in face.unmatched]
    assert errors == [-32700, -32700, -32600, -32600, -32600]
    assert all(m["id"] is None for m in face.unmatched)


async def test_unknown_methods_and_bad_params_are_errors(face: RawFace):
    assert (await face.request("resources/list"))["error"]["code"] == -32601
    assert (await face.request("tools/list", ["not", "an", "object"]))["error"]["code"] == -32602
    assert (await face.request("logging/setLevel", {"level": "loud"}))["error"]["code"] == -32602
    assert (await face.request("logging/setLevel", {"level": "debug"}))["result"] == {}
    unknown = await face.request("tools/call", {"name": "nope", "arguments": {}})
    assert unknown["error"]["code"] == -32602 and "Unknown tool" in unknown["error"]["message"]


async def test_a_line_over_16_mib_fails_alone_with_its_id(face: RawFace):
    await face.initialize()
    answer = face.expect(77)
    big = b'{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"create_task",'
    big += b'"arguments":{"title":"' + b"x" * (17 << 20) + b'"}}}\n'
    face.send_raw(big)
    error = await asyncio.wait_for(answer, 60)
    assert error["error"]["code"] == -32600 and "too large" in error["error"]["message"]
    stats = await face.call("get_stats", {})
    assert stats["structuredContent"]["total"] == 0


async def test_initialize_negotiates_among_the_three_handshake_versions(face: RawFace):
    for asked, answered in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),
    ]:
        result = (await face.request("initialize", {"protocolVersion": asked}))["result"]
        assert result["protocolVersion"] == answered
        assert result["capabilities"] == {"tools": {"listChanged": False}, "logging": {}}
        assert result["serverInfo"]["name"] == "bindery"


async def test_modern_requests_are_answered_in_their_era(face: RawFace):
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    }
    discover = (await face.request("server/discover", {"_meta": meta}))["result"]
    assert "2026-07-28" in discover["supportedVersions"]
    assert discover["resultType"] == "complete"
    listed = (await face.request("tools/list", {"_meta": meta}))["result"]
    assert len(listed["tools"]) == 14 and listed["resultType"] == "complete"
    assert listed["cacheScope"] == "public" and listed["ttlMs"] > 0
    called = (
        await face.request(
            "tools/call", {"name": "create_task", "arguments": {"title": "m"}, "_meta": meta}
        )
    )["result"]
    assert called["resultType"] == "complete" and called["structuredContent"]["title"] == "m"
    future = {**meta, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    refused = await face.request("tools/list", {"_meta": future})
    assert refused["error"]["code"] == -32022
    assert "2026-07-28" in refused["error"]["data"]["supported"]


async def test_a_cancelled_call_gets_no_answer_and_does_nothing(tmp_path: Path):
    # Sent at once, the call waits for the backend's first start: time to cancel it.
    env = face_env(tmp_path)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    try:
        face.send(
            {
                "jsonrpc": "2.0",
                "id": 5,
                "method": "tools/call",
                "params": {"name": "create_task", "arguments": {"title": "cancel me"}},
            }
        )
        face.send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 5, "reason": "changed my mind"},
            }
        )
        assert (await face.request("ping"))["result"] == {}
        stats = await face.call("get_stats", {})
        assert stats["structuredContent"]["total"] == 0
        await asyncio.sleep(0.5)
        assert not any(m.get("id") == 5 for m in face.unmatched)
    finally:
        await face.kill()


async def test_calls_run_concurrently_and_answer_as_they_finish(face: RawFace):
    await face.initialize()
    results = await asyncio.gather(
        *(face.call("create_task", {"title": f"t{i}"}) for i in range(50))
    )
    ids = {r["structuredContent"]["id"] for r in results}
    assert len(ids) == 50


async def test_stdin_eof_ends_the_face_cleanly_and_leaves_no_backend(tmp_path: Path):
    env = face_env(tmp_path)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    await face.initialize()
    await face.call("create_task", {"title": "before exit"})
    backends = backends_of(env["BINDERY_DB"])
    assert len(backends) == 1
    children = psutil.Process(face.process.pid).children(recursive=True)
    assert await face.close() == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"
    assert backends_of(env["BINDERY_DB"]) == []
    assert "Traceback" not in face.stderr()


async def test_sigterm_ends_the_face_cleanly_and_leaves_no_backend(tmp_path: Path):
    env = face_env(tmp_path)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    await face.call("get_stats", {})
    children = psutil.Process(face.process.pid).children(recursive=True)
    os.kill(face.process.pid, signal.SIGTERM)
    assert await asyncio.wait_for(face.process.wait(), 20) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    assert backends_of(env["BINDERY_DB"]) == []
    await face.kill()


async def test_a_face_killed_with_sigkill_takes_its_backend_along(tmp_path: Path):
    env = face_env(tmp_path)
    face = await RawFace.start(env, tmp_path / "face.stderr")
    await face.call("get_stats", {})
    backends = backends_of(env["BINDERY_DB"])
    assert len(backends) == 1
    await face.kill()
    _, alive = psutil.wait_procs(backends, timeout=10)
    assert not alive
