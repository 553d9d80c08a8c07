"""The face's way to the backend: pooled HTTP behind a breaker, retries and a read cache.

    tool call ──> Guard: cache (reads) ──> retries (idempotent tools, 20 % budget)
                         ──> breaker around each attempt ──> PooledHttpClient ──> backend REST

What counts against the backend, and what is retried:

    connection refused/reset, timeout, HTTP 5xx    a breaker failure; retried if idempotent
    HTTP 4xx (not found, invalid, conflict, ...)   the caller's mistake: neither, and reported
    breaker open                                   fails at once: "retry in N s"

Every breaker state change is written to stderr as one JSON line (the gateway keeps a server's
stderr), so an operator sees when Bindery's backend was cut off and when it came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from roundhouse.bindery.face.tools import Request, Tool
from roundhouse.errors import RoundhouseError, UpstreamProtocolError
from roundhouse.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Guard,
    Limits,
    ResponseCache,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)
from roundhouse.upstream.pooled import (
    BackendTimeout,
    BackendUnavailable,
    PooledHttpClient,
    PooledResponse,
)

__all__ = ["BackendFailed", "BackendRejected", "BinderyClient"]

log = logging.getLogger(__name__)

BREAKER_NAME: Final = "bindery"
#: Connections to the backend: enough for concurrent callers, well under its own limits.
LIMITS: Final = Limits(max_connections=16, max_keepalive=16)
#: How often an open breaker looks at the backend's /health when nobody restarts it for us.
HEALTH_POLL_INTERVAL: Final = 1.0
HEALTH_TIMEOUT: Final = 2.0


class BackendRejected(RoundhouseError):
    """The backend answered 4xx: the request was wrong (unknown task, a cycle, bad field).

    Not a failure of the backend: the breaker does not count it, and it is not retried.
    """

    counts_as_failure = False

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = code


class BackendFailed(RoundhouseError):
    """The backend answered 5xx (or something that is not its JSON): a failure, retryable."""

    counts_as_failure = True

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackendUnavailable | BackendTimeout | BackendFailed)


def log_breaker_change(name: str, old: BreakerState, new: BreakerState) -> None:
    """One JSON line on stderr per state change."""
    line = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": "breaker",
        "breaker": name,
        "from": old.value,
        "to": new.value,
    }
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(orjson.dumps(line).decode() + "\n")
        sys.stderr.flush()


class BinderyClient:
    """Calls the backend for the tools; one per face."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        cache_ttl: float = 300.0,
        breaker_failures: int = 5,
        breaker_recovery: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self._timeouts = Timeouts.total(timeout)
        self.breaker = CircuitBreaker(
            BREAKER_NAME,
            BreakerConfig(failure_threshold=breaker_failures, recovery_timeout=breaker_recovery),
            on_change=log_breaker_change,
        )
        self.guard = Guard(
            self.breaker,
            policy=RetryPolicy(),
            budget=RetryBudget(0.2),
            cache=ResponseCache(ttl=cache_ttl),
            retryable=_retryable,
        )
        self._http = PooledHttpClient(base_url, timeouts=self._timeouts, limits=LIMITS)
        self._retired: list[PooledHttpClient] = []

    async def call(self, tool: Tool, arguments: Mapping[str, Any], request: Request) -> Any:
        """The backend's JSON answer to ``request`` (None for 204), through the guard;
        ``arguments`` (the clean ones) key the cache."""

        async def attempt() -> Any:
            response = await self._http.request(
                request.method, request.path, json=request.json, params=request.params
            )
            return _answer(response)

        return await self.guard.run(
            tool.name,
            arguments,
            attempt,
            idempotent=tool.idempotent or tool.read_only,
            mutation=tool.mutation,
        )

    def rebind(self, base_url: str) -> None:
        """Point at a backend that moved (restarted on another port)."""
        if base_url == self.base_url:
            return
        log.info("bindery backend moved to a new address")
        self._retired.append(self._http)
        self._http = PooledHttpClient(base_url, timeouts=self._timeouts, limits=LIMITS)
        self.base_url = base_url

    def backend_recovered(self) -> None:
        """The backend is healthy again: let the next call probe it now, not after the full
        recovery timeout."""
        if self.breaker.state is BreakerState.OPEN:
            self.breaker.probe_now()

    async def watch_health(self) -> None:
        """While the circuit is open, look at /health every second and probe when it answers.

        For a backend nobody here restarts (MCP_AUTO_LAUNCH_BACKEND=false): once it is back,
        calls resume within a second instead of after the recovery timeout.
        """
        while True:
            await asyncio.sleep(HEALTH_POLL_INTERVAL)
            if self.breaker.state is BreakerState.OPEN and await self.healthy():
                self.backend_recovered()

    async def healthy(self) -> bool:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                response = await self._http.request("GET", "/health")
        except (RoundhouseError, TimeoutError):
            return False
        return response.status == 200

    def snapshot(self) -> dict[str, Any]:
        return self.guard.snapshot()

    async def aclose(self) -> None:
        for http in (*self._retired, self._http):
            with contextlib.suppress(Exception):
                await http.aclose()
        self._retired.clear()


def _answer(response: PooledResponse) -> Any:
    status = response.status
    if status == 204:
        return None
    if 200 <= status < 300:
        try:
            return response.json()
        except UpstreamProtocolError:
            raise BackendFailed(
                status, "the Bindery backend sent an answer that is not JSON"
            ) from None
    code, message = _error_of(response)
    if 400 <= status < 500:
        raise BackendRejected(status, code, message)
    raise BackendFailed(status, f"the Bindery backend failed (HTTP {status}): {message}")


def _error_of(response: PooledResponse) -> tuple[str, str]:
    """``(code, message)`` of the backend's ``{"error": {...}}``, or a stand-in."""
    try:
        body = response.json()
    except UpstreamProtocolError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return code, message
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return "invalid", body["detail"]
    return "error", f"HTTP {response.status}"
