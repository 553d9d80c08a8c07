"""The management API: REST over the manager, OpenAPI at ``/openapi.json``.

Routes are thin: they parse the request, call one :class:`~roundhouse.manager.AsyncManager`
method and return its view. Validation of specs happens once, in the manager; errors become
wire errors in :mod:`roundhouse.api.errors`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, FastAPI, Query, Request, Response
from fastapi.responses import ORJSONResponse, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from roundhouse import __version__
from roundhouse.api.errors import error_body, install_error_handlers
from roundhouse.api.limits import BodyLimit
from roundhouse.errors import InvalidInput
from roundhouse.manager import MAX_LOG_LINES, AsyncManager, parse_spec
from roundhouse.security.origin import OriginPolicy
from roundhouse.spec import SLUG_PATTERN, ServerSpec

__all__ = ["create_app"]

SPEC_SCHEMA = ServerSpec.model_json_schema(
    mode="validation", ref_template="#/components/schemas/{model}"
)
_SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServerSpec"}}},
    }
}


class OriginGuard:
    """403 for a foreign ``Origin`` or, when bound to loopback, a non-loopback ``Host``."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            host = headers.get(b"host")
            if not self.policy.origin_allowed(origin.decode("latin-1") if origin else None):
                await ORJSONResponse(error_body(-32600, "origin not allowed"), status_code=403)(
                    scope, receive, send
                )
                return
            if not self.policy.host_allowed(host.decode("latin-1") if host else None):
                await ORJSONResponse(error_body(-32600, "host not allowed"), status_code=403)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise InvalidInput("request body is empty; a JSON object is expected", field="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", field="body") from None


def create_app(manager: AsyncManager, *, port: int | None = None) -> ASGIApp:
    settings = manager.settings
    app = FastAPI(
        title="Roundhouse",
        version=__version__,
        summary="Gateway and manager for MCP servers",
        default_response_class=ORJSONResponse,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    api = APIRouter(prefix="/api")

    @app.get("/health", tags=["gateway"])
    async def gateway_health(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - manager.started_at, 3),
            "endpoints": {"api": f"{base}/api", "openapi": f"{base}/openapi.json"},
        }

    @api.get("/health", tags=["servers"])
    async def health() -> dict[str, Any]:
        return await manager.health()

    @api.get("/servers", tags=["servers"])
    async def list_servers() -> list[dict[str, Any]]:
        return await manager.list_servers()

    @api.post("/servers", status_code=201, tags=["servers"], openapi_extra=_SPEC_BODY)
    async def create_server(request: Request) -> dict[str, Any]:
        return await manager.create_server(await _json_body(request))

    @api.get("/servers/{slug}", tags=["servers"])
    async def get_server(slug: str) -> dict[str, Any]:
        return await manager.get_server(_slug(slug))

    @api.put("/servers/{slug}", tags=["servers"], openapi_extra=_SPEC_BODY)
    async def put_server(slug: str, request: Request, response: Response) -> dict[str, Any]:
        view, created = await manager.put_server(_slug(slug), await _json_body(request))
        response.status_code = 201 if created else 200
        return view

    @api.patch("/servers/{slug}", tags=["servers"])
    async def patch_server(
        slug: str, patch: Annotated[dict[str, Any], Body(description="JSON merge patch")]
    ) -> dict[str, Any]:
        return await manager.patch_server(_slug(slug), patch)

    @api.delete("/servers/{slug}", status_code=204, tags=["servers"])
    async def delete_server(slug: str) -> Response:
        await manager.delete_server(_slug(slug))
        return Response(status_code=204)

    @api.post("/servers/{slug}/start", tags=["lifecycle"])
    async def start(slug: str) -> dict[str, Any]:
        return await manager.start(_slug(slug))

    @api.post("/servers/{slug}/stop", tags=["lifecycle"])
    async def stop(slug: str) -> dict[str, Any]:
        return await manager.stop(_slug(slug))

    @api.post("/servers/{slug}/restart", tags=["lifecycle"])
    async def restart(slug: str) -> dict[str, Any]:
        return await manager.restart(_slug(slug))

    @api.post("/servers/{slug}/scale", tags=["lifecycle"])
    async def scale(
        slug: str, instances: Annotated[int, Body(embed=True, ge=0, le=64, strict=True)]
    ) -> dict[str, Any]:
        return await manager.scale(_slug(slug), instances)

    @api.get("/servers/{slug}/instances", tags=["servers"])
    async def instances(slug: str) -> list[dict[str, Any]]:
        return await manager.instances(_slug(slug))

    @api.get("/servers/{slug}/logs", tags=["servers"], response_model=None)
    async def logs(
        slug: str,
        lines: Annotated[int, Query(ge=0, le=MAX_LOG_LINES)] = 100,
        follow: bool = False,
    ) -> dict[str, Any] | StreamingResponse:
        slug = _slug(slug)
        if not follow:
            return {"lines": [entry.to_dict() for entry in await manager.logs(slug, lines)]}
        await manager.logs(slug, 0)  # 404 now, not inside the stream
        return StreamingResponse(_follow(manager, slug, lines), media_type="application/x-ndjson")

    @api.post("/import", tags=["servers"])
    async def import_servers(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("servers"), list):
            raise InvalidInput('expected {"servers": [spec, ...]}', field="servers")
        specs = [parse_spec(item) for item in body["servers"]]
        slugs = [spec.slug for spec in specs]
        if len(set(slugs)) != len(slugs):
            raise InvalidInput("the same slug appears twice", field="servers")
        return {"imported": await manager.import_specs(specs)}

    app.include_router(api)
    original_openapi = app.openapi

    def openapi_with_spec() -> dict[str, Any]:
        schema = original_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ServerSpec", {k: v for k, v in SPEC_SCHEMA.items() if k != "$defs"})
        for name, definition in SPEC_SCHEMA.get("$defs", {}).items():
            components.setdefault(name, definition)
        return schema

    app.openapi = openapi_with_spec  # type: ignore[method-assign]
    policy = OriginPolicy(
        bind_host=settings.host,
        port=settings.port if port is None else port,
        allowed_origins=settings.allowed_origins,
    )
    return OriginGuard(BodyLimit(app, settings.max_body_bytes), policy)


def _slug(slug: str) -> str:
    if len(slug) > 40 or not re.match(SLUG_PATTERN, slug):
        raise InvalidInput(f"{slug[:60]!r} is not a valid slug", field="slug")
    return slug


async def _follow(manager: AsyncManager, slug: str, lines: int) -> AsyncIterator[bytes]:
    """The last ``lines`` lines, then every new one, as NDJSON, until the client goes away."""
    async with manager.follow_logs(slug) as subscription:
        # Subscribed before reading the tail, so no line falls between the two; a line in both
        # is recognised by its timestamp and sent once.
        last = 0.0
        for entry in await manager.logs(slug, lines):
            last = entry.ts
            yield orjson.dumps(entry.to_dict()) + b"\n"
        async for event in subscription:
            if event.data["at"] <= last:
                continue
            data = event.data
            line = {"ts": data["at"], "instance": data["instance"], "line": data["line"]}
            yield orjson.dumps(line) + b"\n"
