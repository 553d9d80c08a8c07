"""The MCP endpoints with the official SDK client, in both eras, through /mcp and per server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp import Client

from .served import Served, open_session, serve

MODES = ["legacy", "2026-07-28"]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path) as served:
        await served.add("raw", "raw_server.py")
        await served.add("sdk", "sdk_server.py")
        yield served


@pytest.mark.parametrize("mode", MODES)
async def test_the_aggregate_endpoint_lists_and_calls_every_servers_tools(served, mode):
    async with Client(served.mcp(), mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"raw__echo", "raw__add", "sdk__echo", "sdk__add"} <= names
        result = await client.call_tool("raw__echo", {"text": "through raw"})
        assert result.content[0].text == "through raw"
        result = await client.call_tool("sdk__add", {"a": 2, "b": 3})
        assert "5" in result.content[0].text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slug", ["raw", "sdk"])
async def test_a_servers_own_endpoint_offers_it_as_it_is(served, mode, slug):
    async with Client(served.mcp(slug), mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "add"} <= names
        result = await client.call_tool("echo", {"text": f"to {slug}"})
        assert f"to {slug}" in result.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_and_resources_of_the_sdk_server_are_reachable_through_both_endpoints(
    served, mode
):
    for url, prefix in ((served.mcp(), "sdk__"), (served.mcp("sdk"), "")):
        async with Client(url, mode=mode) as client:
            prompts = (await client.list_prompts()).prompts
            prompt = next(p for p in prompts if p.name.startswith(prefix))
            got = await client.get_prompt(prompt.name, _prompt_args(prompt))
            assert got.messages
            resources = (await client.list_resources()).resources
            assert resources
            read = await client.read_resource(resources[0].uri)
            assert read.contents


def _prompt_args(prompt: object) -> dict[str, str]:
    arguments = getattr(prompt, "arguments", None) or []
    return {argument.name: "x" for argument in arguments}


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_tool_on_the_aggregate_endpoint_is_a_clear_error(served, mode):
    async with Client(served.mcp(), mode=mode) as client:
        with pytest.raises(Exception, match="unknown tool"):
            await client.call_tool("nope__echo", {"text": "x"})


async def test_a_server_that_dies_is_withdrawn_from_the_catalog_and_comes_back(served):
    pid = served.manager.supervisor.workers("raw")[0].record.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def withdrawn() -> bool:
        return not any(name.startswith("raw__") for name in served.tool_names())

    deadline = time.monotonic() + 2
    while not await withdrawn():
        assert time.monotonic() < deadline, "the dead server's tools are still offered"
        await asyncio.sleep(0.01)
    await served.catalogued("raw", timeout=5)
    async with Client(served.mcp(), mode="legacy") as client:
        result = await client.call_tool("raw__echo", {"text": "back"})
        assert result.content[0].text == "back"


async def test_killing_an_upstream_fails_100_calls_in_flight_within_a_second_then_recovers(
    served,
):
    async with httpx.AsyncClient(base_url=served.url, timeout=30, trust_env=False) as http:
        headers = await open_session(http, "/servers/raw/mcp")

        async def slow_call(n: int) -> dict[str, object]:
            body = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"seconds": 30}},
            }
            response = await http.post("/servers/raw/mcp", json=body, headers=headers)
            return dict(response.json())

        calls = [asyncio.create_task(slow_call(n)) for n in range(1, 101)]
        await asyncio.sleep(0.5)  # all sent and waiting on the upstream
        pid = served.manager.supervisor.workers("raw")[0].record.pid
        assert pid is not None
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=5)
        elapsed = time.monotonic() - killed
        assert elapsed < 1.0, f"the calls took {elapsed:.2f}s to fail"
        assert all("error" in answer for answer in answers)
        assert sorted(answer["id"] for answer in answers) == list(range(1, 101))
    await served.catalogued("raw", timeout=5)
    async with Client(served.mcp("raw"), mode="legacy") as client:
        assert (await client.call_tool("echo", {"text": "again"})).content[0].text == "again"
