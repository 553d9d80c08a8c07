"""HttpConnection and the handshake against real Streamable HTTP fixture servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roundhouse.errors import UpstreamClosed, UpstreamTimeout
from roundhouse.protocol.eras import INITIALIZED_NOTIFICATION, initialize_params
from roundhouse.upstream.base import UpstreamRpcError
from roundhouse.upstream.handshake import handshake, ping
from roundhouse.upstream.http import HttpConnection, UpstreamSessionExpired

SERVERS = Path(__file__).parents[1] / "fixtures" / "servers"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def http_server(script: str, *args: str, ready_within: float = 20) -> AsyncIterator[str]:
    """Run a fixture HTTP server on a free port until /health answers; yields its /mcp URL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVERS / script),
        "--port",
        str(port),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_within
        async with httpx.AsyncClient() as probe:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get(f"{base}/health")).status_code == 200:
                        break
                assert proc.returncode is None, f"{script} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"{script} not healthy in {ready_within} s"
                await asyncio.sleep(0.05)
        yield f"{base}/mcp"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as shared:
        yield shared


def text_of(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def test_a_legacy_http_server_gets_a_session_and_answers_tools_call(
    client: httpx.AsyncClient,
) -> None:
    async with http_server("http_raw_server.py") as url:
        conn = HttpConnection(url, client=client)
        shaken = await handshake(conn, timeout=5)
        assert shaken.era == "legacy"
        assert conn.session_id is not None
        assert conn.protocol_version == "2025-11-25"
        result = await conn.request(
            "tools/call", {"name": "echo", "arguments": {"text": "hi"}}, timeout=5
        )
        assert text_of(result) == "hi"
        assert 0 < await ping(conn, shaken, timeout=5) < 1
        session = conn.session_id
        await conn.aclose()
        assert conn.closed
        # The DELETE ended the session on the server.
        answer = await client.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"mcp-session-id": session},
        )
        assert answer.status_code == 404
        with pytest.raises(UpstreamClosed):
            await conn.request("ping", timeout=1)


async def test_a_modern_http_server_is_met_with_discover_and_needs_no_session(
    client: httpx.AsyncClient,
) -> None:
    async with (
        http_server("http_raw_server.py", "--modern") as url,
        HttpConnection(url, client=client) as conn,
    ):
        shaken = await handshake(conn, timeout=5)
        assert shaken.era == "modern"
        assert conn.session_id is None
        params = shaken.stamp({"name": "add", "arguments": {"a": 1, "b": 2}})
        assert text_of(await conn.request("tools/call", params, timeout=5)) == "3"
        assert await ping(conn, shaken, timeout=5) > 0


async def test_a_lost_session_raises_session_expired(client: httpx.AsyncClient) -> None:
    async with http_server("http_raw_server.py") as url:
        conn = HttpConnection(url, client=client)
        await handshake(conn, timeout=5)
        assert conn.session_id is not None
        await client.delete(url, headers={"mcp-session-id": conn.session_id})
        with pytest.raises(UpstreamSessionExpired):
            await conn.request("tools/list", timeout=5)
        assert conn.session_id is None


async def test_a_json_rpc_error_in_an_http_answer_keeps_the_upstreams_code(
    client: httpx.AsyncClient,
) -> None:
    async with http_server("http_raw_server.py") as url:
        conn = HttpConnection(url, client=client)
        await handshake(conn, timeout=5)
        with pytest.raises(UpstreamRpcError) as caught:
            await conn.request("no/such/method", timeout=5)
        assert caught.value.code == -32601
        raw = await conn.send_request_raw(
            {"jsonrpc": "2.0", "id": "client-9", "method": "tools/list"}, timeout=5
        )
        assert raw["id"] == "client-9"
        assert {t["name"] for t in raw["result"]["tools"]} >= {"echo", "add"}
        await conn.aclose()


async def test_the_sdk_server_over_http_completes_a_handshake_and_answers_tools(
    client: httpx.AsyncClient,
) -> None:
    async with (
        http_server("sdk_server.py", "--http") as url,
        HttpConnection(url, client=client) as conn,
    ):
        shaken = await handshake(conn, timeout=10)
        assert shaken.era == "modern"
        assert shaken.server_info["name"] == "sdk-fixture"
        params = shaken.stamp({"name": "echo", "arguments": {"text": "over http"}})
        assert text_of(await conn.request("tools/call", params, timeout=5)) == "over http"
        prompt = await conn.request(
            "prompts/get",
            shaken.stamp({"name": "greet", "arguments": {"name": "Ann"}}),
            timeout=5,
        )
        assert "Ann" in prompt["messages"][0]["content"]["text"]
        resource = await conn.request(
            "resources/read", shaken.stamp({"uri": "fixture://hello"}), timeout=5
        )
        assert resource["contents"][0]["text"] == "hello from the SDK fixture"
        assert await ping(conn, shaken, timeout=5) > 0


async def test_a_legacy_session_with_the_sdk_server_reads_sse_answers_and_ends_with_delete(
    client: httpx.AsyncClient,
) -> None:
    async with http_server("sdk_server.py", "--http") as url:
        conn = HttpConnection(url, client=client)
        result = await conn.request("initialize", initialize_params(), timeout=10)
        assert result["protocolVersion"] == "2025-11-25"
        assert conn.session_id is not None
        await conn.notify(INITIALIZED_NOTIFICATION)
        answer = await conn.request(
            "tools/call", {"name": "echo", "arguments": {"text": "legacy"}}, timeout=5
        )
        assert text_of(answer) == "legacy"
        session = conn.session_id
        await conn.aclose()
        gone = await client.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={
                "mcp-session-id": session,
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2025-11-25",
            },
        )
        assert gone.status_code == 404


async def test_nothing_listening_raises_upstream_closed(client: httpx.AsyncClient) -> None:
    conn = HttpConnection(f"http://127.0.0.1:{free_port()}/mcp", client=client)
    with pytest.raises(UpstreamClosed, match="ping"):
        await conn.request("ping", timeout=5)


async def test_a_server_that_never_answers_raises_upstream_timeout_naming_the_method(
    client: httpx.AsyncClient,
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        conn = HttpConnection(f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", client=client)
        with pytest.raises(UpstreamTimeout, match=r"tools/list within 0\.3 s"):
            await conn.request("tools/list", timeout=0.3)
    finally:
        silent.close()
