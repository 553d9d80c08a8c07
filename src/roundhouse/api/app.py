"""The gateway's HTTP application: MCP traffic to its lean frontend, the rest to the REST API.

The management API (FastAPI, its pydantic models, the OpenAPI document) is built on the first
request that needs it, not at start: FastAPI alone costs ~6 MiB and ~0.2 s to import, and an
MCP client never needs it. ``GET /health`` is answered here without it, so a supervisor's
health probe does not load it either. Both go through the same guards as before: the Origin and
Host check (403) and the body cap (413).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from roundhouse import __version__
from roundhouse.api.limits import BodyLimit
from roundhouse.gateway.frontends.http import McpHttpApp
from roundhouse.security.origin import OriginPolicy

if TYPE_CHECKING:
    from roundhouse.manager import AsyncManager

__all__ = ["OriginGuard", "create_app", "gateway_status"]

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def gateway_status(manager: AsyncManager, base_url: object) -> dict[str, Any]:
    """The body of ``GET /health``: the gateway is up, since when, and where its API is."""
    base = str(base_url).rstrip("/")
    return {
        "status": "ok",
        "version": __version__,
        "uptime_seconds": round(time.time() - manager.started_at, 3),
        "endpoints": {"api": f"{base}/api", "openapi": f"{base}/openapi.json"},
    }


def base_url(scope: Scope) -> str:
    """The request's base URL as Starlette's ``Request.base_url`` spells it (Host header first,
    else the server address), without loading Starlette's request machinery."""
    scheme: str = scope.get("scheme", "http")
    path: str = scope.get("root_path", "") + "/"
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scheme}://{value.decode('latin-1')}{path}"
    server = scope.get("server")
    if server is None:
        return path
    host, port = server
    if port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}{path}"
    return f"{scheme}://{host}:{port}{path}"


async def send_json(send: Send, status: int, body: Any, *, head: bool = False) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else data})


def _refusal(message: str) -> dict[str, Any]:
    return {"error": {"code": -32600, "message": message, "field": None}}


class OriginGuard:
    """403 for a foreign ``Origin`` or, when bound to loopback, a non-loopback ``Host``."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Every copy of a header is checked: a repeated Origin or Host must not let the
            # last (or first) one vouch for the others.
            origins = [v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"]
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
            if not all(self.policy.origin_allowed(origin) for origin in origins):
                await send_json(send, 403, _refusal("origin not allowed"))
                return
            if not all(self.policy.host_allowed(host) for host in hosts):
                await send_json(send, 403, _refusal("host not allowed"))
                return
        await self.app(scope, receive, send)


class ManagementApp:
    """The REST API, built on its first request; ``GET /health`` answered without it.

    Concurrent first requests wait for one build. The import and the build run in a thread, so
    MCP calls in flight meanwhile are not held up by them; a build that fails is tried again by
    the next request.
    """

    def __init__(self, manager: AsyncManager) -> None:
        self._manager = manager
        self._app: ASGIApp | None = None
        self._building: asyncio.Future[ASGIApp] | None = None

    @property
    def loaded(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/health"
            and scope["method"] in ("GET", "HEAD")
        ):
            body = gateway_status(self._manager, base_url(scope))
            await send_json(send, 200, body, head=scope["method"] == "HEAD")
            return
        app = self._app or await self._build()
        await app(scope, receive, send)

    async def _build(self) -> ASGIApp:
        if self._building is None:
            self._building = asyncio.ensure_future(asyncio.to_thread(_build, self._manager))
        building = self._building
        try:
            # Shielded: one waiting request that goes away must not cancel the build the
            # others are waiting for.
            app = await asyncio.shield(building)
        except Exception:
            if self._building is building:
                self._building = None
            raise
        self._app = app
        return app


def _build(manager: AsyncManager) -> ASGIApp:
    from roundhouse.api.routes import build_management_app

    started = time.perf_counter()
    app = build_management_app(manager)
    log.debug("management API built in %.3f s", time.perf_counter() - started)
    return app


def create_app(manager: AsyncManager, *, port: int | None = None) -> ASGIApp:
    settings = manager.settings
    policy = OriginPolicy(
        bind_host=settings.host,
        port=settings.port if port is None else port,
        allowed_origins=settings.allowed_origins,
    )
    management = OriginGuard(BodyLimit(ManagementApp(manager), settings.max_body_bytes), policy)
    # MCP traffic goes straight to its lean frontend, which hands every other path to the
    # REST API: the frontend is the outermost app, so an MCP request crosses no other layer.
    return McpHttpApp(
        manager.gateway,
        policy,
        max_body_bytes=settings.max_mcp_body_bytes,
        fallback=management,
    )
