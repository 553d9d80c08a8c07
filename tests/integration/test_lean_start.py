"""What ``roundhouse up`` loads before anyone asks for it, and that what it loads later works.

The management API (FastAPI), the Postgres driver and the HTTP client are not needed to serve
MCP, and a SQLite registry never needs SQLAlchemy or alembic (it runs on the stdlib ``sqlite3``):
the gateway's start-up time and idle memory depend on them staying unloaded until a request needs
them (docs/PERFORMANCE.md, "Start-up and idle memory"). These tests check the set of imported
modules, not a duration or a byte count, so a slow or busy machine cannot make them fail; the
imports are read from the real process with Python's own ``-X importtime`` report
(``PYTHONPROFILEIMPORTTIME``), not through a debug route.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from .conftest import fixture_path
from .gateway import Gateway

#: Modules a gateway on SQLite must not have imported while it only serves MCP and /health.
NOT_AT_START = (
    "fastapi",
    "sqlalchemy",
    "aiosqlite",
    "alembic",
    "asyncpg",
    "httpx",
    "rich",
)

#: ... and, without a config file, YAML neither.
NOT_IMPORTED_BY_UP = (*NOT_AT_START, "yaml")

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)
LEGACY = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


def imported(log: Path) -> set[str]:
    return set(_IMPORTED.findall(log.read_text(errors="replace")))


def loaded_too_early(modules: set[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        for top in NOT_AT_START
        if name == top or name.startswith(f"{top}.")
    )


def test_importing_what_up_runs_loads_none_of_the_lazy_parts() -> None:
    script = (
        "import sys\n"
        "import roundhouse.cli, roundhouse.api.serve, roundhouse.manager, roundhouse.api.app\n"
        f"lazy = {NOT_IMPORTED_BY_UP!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in lazy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", (
        "`roundhouse up` imports modules at start that it loads lazily on purpose "
        f"(see docs/PERFORMANCE.md, 'Start-up and idle memory'): {out.stdout.strip()}"
    )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    config = tmp_path / "roundhouse.json"
    spec = {"transport": {"command": sys.executable, "args": [fixture_path("raw_server.py")]}}
    config.write_bytes(orjson.dumps({"servers": {"raw": spec}}))
    running = Gateway(
        tmp_path / "data", "--config", str(config), env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    try:
        yield running
    finally:
        running.stop()


def first_echo(url: str, timeout: float = 30.0) -> dict[str, object]:
    """A legacy session and one ``tools/call`` of ``echo``, retried until the server is up."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10, trust_env=False) as client:
        while True:
            init = client.post(
                url,
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
                headers={"Accept": LEGACY["Accept"]},
            )
            if init.status_code == 200:
                headers = {**LEGACY, "Mcp-Session-Id": init.headers["mcp-session-id"]}
                call = client.post(
                    url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": "hi"}},
                    },
                    headers=headers,
                )
                body: dict[str, object] = call.json() if call.status_code == 200 else {}
                if "result" in body:
                    return body
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url}: {init.status_code} {init.text}")
            time.sleep(0.05)


def test_mcp_calls_and_health_do_not_load_the_management_api_and_the_first_api_calls_work(
    gateway: Gateway,
) -> None:
    answer = first_echo(f"{gateway.url}/servers/raw/mcp")
    assert "hi" in str(answer["result"])
    health = gateway.request("GET", "/health")
    assert health.status_code == 200
    assert health.json()["endpoints"]["api"] == f"{gateway.url}/api"
    assert gateway.request("HEAD", "/health").status_code == 200
    early = loaded_too_early(imported(gateway.log))
    assert early == [], (
        "the gateway loaded these while serving only MCP and /health; they are meant to be "
        f"loaded on the first request that needs them: {early}"
    )

    # The first management requests arrive together: all wait for one build, all succeed.
    paths = ["/openapi.json", "/api/servers", "/api/servers/raw", "/api/health", "/docs"]
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(lambda path: gateway.request("GET", path), paths))
    assert [a.status_code for a in answers] == [200] * len(paths), [a.text for a in answers]
    assert "ServerSpec" in answers[0].json()["components"]["schemas"]
    assert [s["slug"] for s in answers[1].json()] == ["raw"]
    assert answers[2].json()["state"] == "running"
    assert "fastapi" in imported(gateway.log)

    # The API writes through the same manager as the one that serves MCP.
    dormant = {"slug": "dormant", "enabled": False, "transport": {"command": sys.executable}}
    assert gateway.request("POST", "/api/servers", json=dormant).status_code == 201
    listed = gateway.request("GET", "/api/servers").json()
    assert [s["slug"] for s in listed] == ["dormant", "raw"]
    # The SQLite registry did all that on the stdlib: no SQLAlchemy even for the API.
    registry_parts = ("sqlalchemy", "aiosqlite", "alembic")
    assert not [m for m in imported(gateway.log) if m.split(".")[0] in registry_parts]


def test_a_foreign_origin_is_refused_before_the_management_api_is_loaded(
    gateway: Gateway,
) -> None:
    first_echo(f"{gateway.url}/servers/raw/mcp")
    for path in ("/health", "/api/servers", "/openapi.json"):
        refused = gateway.request("GET", path, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == "origin not allowed"
    refused = gateway.request("POST", "/api/servers", content=b"x" * (2 << 20))
    assert refused.status_code == 413
    assert loaded_too_early(imported(gateway.log)) == []
    # A malformed first API request gets its clean 4xx from the freshly built API.
    bad = gateway.request("POST", "/api/servers", content=b"{not json")
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "body"
