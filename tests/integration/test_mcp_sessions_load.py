"""1,000 legacy sessions at once over 10 servers: no error, and nothing left behind.

Each session does what a client does: ``initialize``, ``notifications/initialized``, one
``tools/call`` to one of the ten servers' ``echo`` through ``/mcp``, then ``DELETE``. All 1,000
are open at the same moment (a barrier holds them after the handshake), over a pool of
:data:`CONNECTIONS` keep-alive connections.

Two views of the same load:

- the real ``roundhouse up`` process, measured from outside: its open file descriptors and RSS
  after a warm-up, and again after the 1,000 sessions closed;
- a gateway in the test's own process, to see inside: the session table holds 1,000 at the
  barrier and none after, and no call is left in the books of the relay or the upstreams.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvicorn

from roundhouse.api.app import create_app
from roundhouse.manager import AsyncManager

from .conftest import eventually, make_settings, stdio_spec, wait_state
from .gateway import Gateway

pytestmark = pytest.mark.slow

SERVERS = [f"s{n}" for n in range(10)]
SESSIONS = 1000
WARM_UP = 50
#: Keep-alive connections the client spreads the sessions over.
CONNECTIONS = 100
FD_MARGIN = 5
RSS_MARGIN = 10 * 1024 * 1024
VERSION = "2025-11-25"
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def initialize(n: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": f"load-{n}", "version": "1"},
        },
    }


class LoadClient:
    """:data:`CONNECTIONS` keep-alive connections, one ``httpx.AsyncClient`` each.

    One client with a pool of 100 would be the bottleneck: httpcore matches every queued request
    against every connection each time one frees up (quadratic in the queue), and 1,000 sessions
    queue a lot. Session ``n`` uses client ``n % CONNECTIONS``, so each pool queues about ten.
    """

    def __init__(self, base_url: str) -> None:
        # Plain HTTP, but each client would still load the CA bundle (50 ms) for its own.
        tls = ssl.create_default_context()
        self.clients = [
            httpx.AsyncClient(
                base_url=base_url,
                trust_env=False,
                verify=tls,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                # Waiting for the pooled connection is not a failure; a stuck answer is.
                timeout=httpx.Timeout(30.0, pool=None),
            )
            for _ in range(CONNECTIONS)
        ]

    def __getitem__(self, n: int) -> httpx.AsyncClient:
        return self.clients[n % len(self.clients)]

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))


async def one_session(pool: LoadClient, n: int, barrier: asyncio.Barrier) -> str:
    """One client's whole life; raises on any answer that is not the expected one."""
    client = pool[n]
    try:
        response = await client.post("/mcp", json=initialize(n), headers=HEADERS)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["protocolVersion"] == VERSION
        session_id = response.headers["mcp-session-id"]
        headers = {**HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": VERSION}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await client.post("/mcp", json=initialized, headers=headers)
        assert response.status_code == 202, response.text
        await barrier.wait()  # every session is open now
        text = f"session {n} says hello"
        call = {
            "jsonrpc": "2.0",
            "id": n,
            "method": "tools/call",
            "params": {"name": f"{SERVERS[n % len(SERVERS)]}__echo", "arguments": {"text": text}},
        }
        response = await client.post("/mcp", json=call, headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["id"] == n, answer
        assert answer["result"]["content"] == [{"type": "text", "text": text}], answer
        response = await client.delete("/mcp", headers=headers)
        assert response.status_code == 200, response.text
        return session_id
    except BaseException:
        # The others wait at the barrier for this one: let them go rather than hang.
        await barrier.abort()
        raise


async def run_sessions(
    base_url: str, count: int, *, at_barrier: Callable[[], None] | None = None
) -> list[str]:
    """``count`` sessions, all open at once before any calls; all must succeed. Returns their
    ids. ``at_barrier`` runs while every one of them is open."""
    barrier = asyncio.Barrier(count + (at_barrier is not None))
    async with LoadClient(base_url) as pool:
        tasks = [asyncio.create_task(one_session(pool, n, barrier)) for n in range(count)]
        try:
            async with asyncio.timeout(60):
                if at_barrier is not None:
                    await barrier.wait()
                    at_barrier()
                results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await barrier.abort()
            for task in tasks:
                task.cancel()
    errors = [r for r in results if isinstance(r, BaseException)]
    real = [e for e in errors if not isinstance(e, asyncio.BrokenBarrierError)]
    assert not errors, f"{len(errors)} of {count} sessions failed, first: {(real or errors)[0]!r}"
    return [r for r in results if isinstance(r, str)]


# --- the real process, measured from outside --------------------------------------------------


def fds_and_rss(pid: int) -> tuple[int, int]:
    process = psutil.Process(pid)
    return process.num_fds(), process.memory_info().rss


async def settled_fds(pid: int, ceiling: int, timeout: float = 10.0) -> int:
    """The process's fd count once it is at most ``ceiling`` (closing sockets takes a moment)."""
    deadline = time.monotonic() + timeout
    fds: int = psutil.Process(pid).num_fds()
    while fds > ceiling and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        fds = psutil.Process(pid).num_fds()
    return fds


async def steady_fds(pid: int, timeout: float = 3.0) -> None:
    """Until the fd count holds still for a few samples."""
    deadline = time.monotonic() + timeout
    last, same = -1, 0
    while same < 5 and time.monotonic() < deadline:
        fds = psutil.Process(pid).num_fds()
        same = same + 1 if fds == last else 0
        last = fds
        await asyncio.sleep(0.05)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path / "data")
    try:
        for slug in SERVERS:
            response = gateway.request(
                "POST", "/api/servers", json=stdio_spec(slug, "raw_server.py")
            )
            assert response.status_code == 201, response.text
        for slug in SERVERS:
            gateway.wait_running(slug)
        yield gateway
    finally:
        gateway.stop()


async def wait_catalogued(base_url: str) -> None:
    """Until ``/mcp`` lists every server's echo (the catalog fills in after ``running``)."""
    wanted = {f"{slug}__echo" for slug in SERVERS}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    headers = {**HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as client:

        async def listed() -> bool:
            response = await client.post("/mcp", json=body, headers=headers)
            names = {tool["name"] for tool in response.json()["result"]["tools"]}
            return wanted <= names

        await eventually(listed, timeout=20, interval=0.1, what="every server in the catalog")


async def test_a_thousand_sessions_leave_no_descriptors_or_memory_behind(
    gateway: Gateway,
) -> None:
    await wait_catalogued(gateway.url)
    pid = gateway.process.pid
    # Warm-up: first-use allocations (code paths, pools, caches) are not a leak.
    await run_sessions(gateway.url, WARM_UP)
    await steady_fds(pid)  # the warm-up's connections are being closed
    fds_before, rss_before = fds_and_rss(pid)

    started = time.monotonic()
    session_ids = await run_sessions(gateway.url, SESSIONS)
    elapsed = time.monotonic() - started
    assert len(set(session_ids)) == SESSIONS

    fds_after = await settled_fds(pid, fds_before + FD_MARGIN)
    _, rss_after = fds_and_rss(pid)
    report = (
        f"{SESSIONS} sessions in {elapsed:.1f} s; fds {fds_before} -> {fds_after}; "
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
    )
    print(report)
    assert fds_after <= fds_before + FD_MARGIN, report
    assert rss_after <= rss_before + RSS_MARGIN, report

    # Every session is gone: its id is unknown now (the table of a process we cannot look into).
    async with LoadClient(gateway.url) as pool:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}

        async def forgotten(n: int, session_id: str) -> int:
            headers = {**HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": VERSION}
            return (await pool[n].post("/mcp", json=ping, headers=headers)).status_code

        statuses = await asyncio.gather(*(forgotten(*item) for item in enumerate(session_ids)))
    assert set(statuses) == {404}


# --- the same load in this process, to see inside ---------------------------------------------


async def test_a_thousand_sessions_are_all_forgotten_after_delete(tmp_path: Path) -> None:
    # As serve() does: with proto 0 asyncio leaves Nagle on (40 ms per keep-alive request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    async with AsyncManager(make_settings(tmp_path, port=port)) as manager:
        config = uvicorn.Config(
            create_app(manager, port=port), lifespan="off", log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await eventually(lambda: server.started or task.done(), timeout=5, what="uvicorn")
            for slug in SERVERS:
                await manager.create_server(stdio_spec(slug, "raw_server.py"))
            for slug in SERVERS:
                await wait_state(manager, slug, "running", timeout=30)
            base_url = f"http://127.0.0.1:{port}"
            await wait_catalogued(base_url)
            sessions = manager.gateway.sessions
            open_at_barrier: list[int] = []

            await run_sessions(
                base_url,
                SESSIONS,
                at_barrier=lambda: open_at_barrier.append(len(sessions)),
            )
            assert open_at_barrier == [SESSIONS]
            assert len(sessions) == 0
            # No call left in anyone's books: the relay, the instances, the upstream pipes.
            relay = manager.gateway.relay
            assert not relay._by_upstream_id and not relay._progress and not relay._pending
            for slug in SERVERS:
                for instance in manager.gateway.instances.ready(slug):
                    assert instance.outstanding == 0
                    assert not getattr(instance.connection, "_pending", {})
        finally:
            server.should_exit = True
            await task
