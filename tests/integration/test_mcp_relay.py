"""What upstreams ask of clients, carried to the right one: sampling and elicitation in both
eras (a 2026-07-28 client gets ``input_required`` and its retry reaches the same upstream call),
progress with the client's own token, and server-everything's sampling among 10 sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.peers import peers

from .conftest import wait_state
from .served import Served, serve

MODES = ["legacy", "2026-07-28"]


def sampler(reply: str) -> Any:
    async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=reply), model="test"
        )

    return sampling


@pytest.fixture
async def conformance(tmp_path: Path) -> AsyncIterator[Served]:
    """The conformance fixture (official SDK) as a legacy-era stdio upstream."""
    peers.ensure_peers()
    command = peers.conformance_fixture(stdio=True).argv
    async with serve(tmp_path) as served:
        await served.manager.create_server(
            {
                "slug": "conf",
                "transport": {"command": command[0], "args": command[1:]},
                "era": "legacy",
                "timeouts": {"start": 30},
            }
        )
        await wait_state(served.manager, "conf", "running", timeout=30)
        yield served


@pytest.mark.parametrize("mode", MODES)
async def test_a_sampling_request_of_the_upstream_reaches_the_client_in_both_eras(
    conformance, mode
):
    async with Client(conformance.mcp("conf"), mode=mode, sampling_callback=sampler("yes")) as c:
        result = await c.call_tool("test_sampling", {"prompt": "hi"})
        assert result.content[0].text == "LLM response: yes"


@pytest.mark.parametrize("mode", MODES)
async def test_an_elicitation_of_the_upstream_reaches_the_client_in_both_eras(conformance, mode):
    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"username": "ann", "email": "a@x"})

    async with Client(conformance.mcp("conf"), mode=mode, elicitation_callback=elicit) as c:
        result = await c.call_tool("test_elicitation", {"message": "who?"})
        assert "ann" in result.content[0].text


async def test_a_client_without_the_sampling_capability_gets_an_error_not_a_hang(conformance):
    async with Client(conformance.mcp("conf"), mode="legacy") as c:
        try:
            result = await asyncio.wait_for(c.call_tool("test_sampling", {"prompt": "hi"}), 10)
        except MCPError as exc:
            assert "sampling/createMessage" in str(exc)
        else:
            assert result.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_the_caller_with_its_own_token(conformance, mode):
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(conformance.mcp("conf"), mode=mode) as c:
        await c.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    assert seen, "no progress notification reached the client"


@pytest.fixture
async def everything_http(tmp_path: Path) -> AsyncIterator[Served]:
    """server-everything in its Streamable HTTP mode, launched by the gateway (local-http)."""
    peers.ensure_peers()
    command = peers.server_everything_http(0)
    async with serve(tmp_path) as served:
        await served.manager.create_server(
            {
                "slug": "everything",
                "transport": {
                    "type": "local-http",
                    "command": command.argv[0],
                    "args": command.argv[1:],
                    "env": {"PORT": "{port}"},
                    "health_path": None,
                },
                "timeouts": {"start": 30},
            }
        )
        await wait_state(served.manager, "everything", "running", timeout=30)
        yield served


async def test_sampling_from_server_everything_reaches_the_right_client_among_10_sessions(
    everything_http,
):
    async def one(n: int) -> str:
        async with Client(
            everything_http.mcp("everything"), mode="legacy", sampling_callback=sampler(f"c{n}")
        ) as client:
            result = await client.call_tool(
                "trigger-sampling-request", {"prompt": f"from {n}", "maxTokens": 5}
            )
            return str(result.content[0].text)

    texts = await asyncio.gather(*(one(n) for n in range(10)))
    for n, text in enumerate(texts):
        assert f'"text": "c{n}"' in text, text
