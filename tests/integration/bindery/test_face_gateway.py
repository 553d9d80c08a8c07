"""Acceptance: Bindery registered in the gateway as a stdio server, all 14 tools called through
the aggregate endpoint ``/mcp`` (names namespaced ``bindery__...``) with the official SDK client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client

from ..conftest import wait_state
from ..served import serve
from .face import backend_url, backends_of, exercise_all_tools, face_env, rest_snapshot


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_all_fourteen_tools_through_the_gateway(tmp_path: Path, mode: str):
    env = face_env(tmp_path)
    spec = {
        "slug": "bindery",
        "transport": {
            "type": "stdio",
            "command": sys.executable,
            "args": ["-m", "roundhouse.bindery.face"],
            "env": env,
        },
        "timeouts": {"start": 60, "stop": 10},
    }
    async with serve(tmp_path) as served:
        await served.manager.create_server(spec)
        await wait_state(served.manager, "bindery", "running", timeout=60)
        await served.catalogued("bindery", timeout=30)
        async with Client(served.mcp(), mode=mode) as client:
            tools = (await client.list_tools()).tools
            ours = {t.name: t.output_schema or {} for t in tools if t.name.startswith("bindery__")}
            assert len(ours) == 14
            assert all(schema for schema in ours.values())
            survivor = await exercise_all_tools(client, ours, prefix="bindery__")
        snapshot = await rest_snapshot(backend_url(env))
        assert [task["id"] for task in snapshot["tasks"]] == [survivor]
    # The gateway stopped the face, and the face its backend.
    assert backends_of(env["BINDERY_DB"]) == []
