"""What the benchmark measures: the upstreams, the payloads, the concurrencies, the messages.

    upstream     raw (stdlib stdio server, legacy era) | sdk (official SDK, 2026-07-28 era)
    payload      20 B | 64 KiB of text echoed by the ``echo`` tool
    concurrency  1 | 16 | 64 connections, one request in flight on each

Shared by ``run.py`` (which drives wrk), ``pipe.py`` (which measures an upstream over a bare
pipe) and ``ceiling.py`` (which proxies to one upstream).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from roundhouse.protocol.eras import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

__all__ = [
    "CONCURRENCIES",
    "MODERN_VERSION",
    "PAYLOADS",
    "REPO",
    "UPSTREAMS",
    "ClientEra",
    "Scenario",
    "Upstream",
    "echo_request",
    "payload_label",
    "scenarios",
]

REPO: Final = Path(__file__).resolve().parent.parent
FIXTURES: Final = REPO / "tests" / "fixtures" / "servers"

ClientEra: TypeAlias = Literal["legacy", "modern"]

MODERN_VERSION: Final = "2026-07-28"
LEGACY_VERSION: Final = "2025-11-25"

PAYLOADS: Final = (20, 64 * 1024)
CONCURRENCIES: Final = (1, 16, 64)


@dataclass(frozen=True, slots=True)
class Upstream:
    """One fixture server, started as a stdio child."""

    name: str
    script: Path
    era: ClientEra  # the era it speaks; clients speak the same one unless told otherwise

    def command(self) -> list[str]:
        return [sys.executable, str(self.script)]


UPSTREAMS: Final = {
    "raw": Upstream("raw", FIXTURES / "raw_server.py", "legacy"),
    "sdk": Upstream("sdk", FIXTURES / "sdk_server.py", "modern"),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    upstream: Upstream
    payload: int
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.upstream.name}/{payload_label(self.payload)}/c{self.concurrency}"


def scenarios(
    upstreams: tuple[str, ...] = ("raw", "sdk"),
    payloads: tuple[int, ...] = PAYLOADS,
    concurrencies: tuple[int, ...] = CONCURRENCIES,
) -> list[Scenario]:
    return [
        Scenario(UPSTREAMS[name], payload, concurrency)
        for name in upstreams
        for payload in payloads
        for concurrency in concurrencies
    ]


def payload_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def echo_request(
    request_id: int, payload: int, *, era: ClientEra, tool: str = "echo"
) -> dict[str, Any]:
    """A ``tools/call`` of ``echo`` with a text of ``payload`` bytes, as a client would send it."""
    params: dict[str, Any] = {"name": tool, "arguments": {"text": "x" * payload}}
    if era == "modern":
        params["_meta"] = {
            PROTOCOL_VERSION_META_KEY: MODERN_VERSION,
            CLIENT_CAPABILITIES_META_KEY: {},
        }
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
