"""Cancelling calls through the HTTP endpoint: by notifications/cancelled, and by going away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from .served import Served, open_session, serve


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path) as served:
        await served.add("raw", "raw_server.py")
        yield served


def sleep_call(request_id: int, seconds: float) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"seconds": seconds}},
    }


def outstanding(served: Served) -> int:
    return sum(worker.outstanding for worker in served.manager.supervisor.ready("raw"))


async def test_notifications_cancelled_ends_a_call_in_flight_and_the_session_goes_on(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=30, trust_env=False) as http:
        headers = await open_session(http, "/servers/raw/mcp")
        call = asyncio.create_task(
            http.post("/servers/raw/mcp", json=sleep_call(7, 30), headers=headers)
        )
        await asyncio.sleep(0.3)
        started = time.monotonic()
        cancel = await http.post(
            "/servers/raw/mcp",
            json={
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 7},
            },
            headers=headers,
        )
        assert cancel.status_code == 202
        answer = (await asyncio.wait_for(call, 5)).json()
        assert time.monotonic() - started < 2
        assert answer["id"] == 7 and "error" in answer
        assert outstanding(served) == 0
        # The upstream was told to stop waiting too: the next call is answered at once.
        echo = {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "after"}}}  # fmt: skip
        response = await http.post("/servers/raw/mcp", json=echo, headers=headers)
        assert response.json()["result"]["content"][0]["text"] == "after"


async def test_a_client_that_goes_away_has_its_call_cancelled(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=30, trust_env=False) as http:
        headers = await open_session(http, "/servers/raw/mcp")
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                "/servers/raw/mcp", json=sleep_call(9, 30), headers=headers, timeout=1.2
            )
    deadline = time.monotonic() + 5
    while outstanding(served) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert outstanding(served) == 0, "the gateway still waits on the upstream for a gone client"
