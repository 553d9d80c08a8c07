"""The official conformance suite through the gateway: every scenario that passes against the
fixture directly passes through ``/servers/{slug}/mcp``, with the fixture as a stdio upstream and
as an HTTP upstream (a local-http server the gateway launches).

The fixture is registered with ``era: both``: one instance speaks the legacy era, one 2026-07-28
(a process speaks one era for life), and each client reaches the instance of its own era. The
suite runs in a thread: it is a subprocess, and the gateway shares this test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers import peers

from .conftest import wait_state
from .served import Served, serve

pytestmark = pytest.mark.slow

VERSIONS = ("stable", "next")


@pytest.fixture(scope="module")
def direct() -> dict[str, set[str]]:
    """What passes against the fixture with nothing in between, per suite version."""
    peers.ensure_peers()
    passing: dict[str, set[str]] = {}
    with peers.running_conformance_fixture() as url:
        for version in VERSIONS:
            results = peers.run_conformance(url, version=version)
            passing[version] = {name for name, ok in results.items() if ok}
    return passing


def fixture_spec(transport: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": "conf",
        "transport": transport,
        "era": "both",
        "instances": {"min": 2, "max": 2},
        "timeouts": {"start": 30},
    }


@pytest.fixture(params=["stdio", "http"])
async def through(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    command = peers.conformance_fixture(stdio=True).argv
    if request.param == "stdio":
        transport = {"type": "stdio", "command": command[0], "args": command[1:]}
    else:
        transport = {
            "type": "local-http",
            "command": command[0],
            "args": [command[1], "--port", "{port}"],
            "health_path": "/health",
            "mcp_path": "/mcp",
        }
    async with serve(tmp_path) as served:
        await served.manager.create_server(fixture_spec(transport))
        for ordinal in (0, 1):
            await wait_state(served.manager, "conf", "running", timeout=60, ordinal=ordinal)
        yield served


@pytest.mark.parametrize("version", VERSIONS)
async def test_every_scenario_that_passes_directly_passes_through_the_gateway(
    direct: dict[str, set[str]], through: Served, version: str
) -> None:
    results = await asyncio.to_thread(
        peers.conformance_results, through.mcp("conf"), version=version
    )
    passed = {name for name, result in results.items() if result.passed}
    lost = direct[version] - passed
    assert not lost, {name: results[name].failures[:3] for name in lost if name in results}
