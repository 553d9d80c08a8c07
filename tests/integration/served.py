"""An in-process gateway on a real 127.0.0.1 socket: the manager, uvicorn and the MCP endpoint
in the test's event loop, for tests that talk MCP to it with real clients."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from roundhouse.api.app import create_app
from roundhouse.manager import AsyncManager

from .conftest import eventually, make_settings, stdio_spec, wait_state


class Served:
    def __init__(self, manager: AsyncManager, port: int) -> None:
        self.manager = manager
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mcp(self, slug: str | None = None) -> str:
        return f"{self.url}/mcp" if slug is None else f"{self.url}/servers/{slug}/mcp"

    async def add(self, slug: str, script: str, *args: str, **extra: Any) -> None:
        await self.manager.create_server(stdio_spec(slug, script, *args, **extra))
        await wait_state(self.manager, slug, "running", timeout=30)
        await self.catalogued(slug)

    async def catalogued(self, slug: str, timeout: float = 10.0) -> None:
        """Wait until the aggregate catalog holds the server's tools."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(name.startswith(f"{slug}__") for name in self.tool_names()):
            if loop.time() > deadline:
                raise AssertionError(f"{slug} never reached the catalog")
            await asyncio.sleep(0.02)

    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.manager.gateway.catalog.tools()]


LEGACY_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


async def open_session(http: httpx.AsyncClient, path: str) -> dict[str, str]:
    """``initialize`` a legacy session on ``path``; the headers its later requests carry."""
    init = await http.post(
        path,
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        headers={"Accept": LEGACY_HEADERS["Accept"]},
    )
    init.raise_for_status()
    return {**LEGACY_HEADERS, "Mcp-Session-Id": init.headers["mcp-session-id"]}


@asynccontextmanager
async def serve(tmp_path: Path, **settings: Any) -> AsyncIterator[Served]:
    """The gateway on an ephemeral 127.0.0.1 port, as ``roundhouse up`` runs it: the listening
    socket made with IPPROTO_TCP (else asyncio leaves Nagle on: 40 ms per keep-alive request)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    async with AsyncManager(make_settings(tmp_path, port=port, **settings)) as manager:
        config = uvicorn.Config(
            create_app(manager, port=port),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await eventually(lambda: server.started or task.done(), timeout=5, what="uvicorn")
        if task.done():
            task.result()  # startup failed: raise its error here
        try:
            yield Served(manager, port)
        finally:
            server.should_exit = True
            await task
            sock.close()


@asynccontextmanager
async def serve_everything(tmp_path: Path) -> AsyncIterator[Served]:
    """A gateway with npm's server-everything as the stdio server ``everything``, catalogued."""
    from tests.peers import peers

    peers.ensure_peers()
    command = peers.server_everything_stdio().argv
    async with serve(tmp_path) as served:
        await served.manager.create_server(
            {
                "slug": "everything",
                "transport": {"command": command[0], "args": command[1:]},
                "timeouts": {"start": 30},
            }
        )
        await wait_state(served.manager, "everything", "running", timeout=30)
        await served.catalogued("everything", timeout=30)
        yield served
