"""The management API's routes: REST over the manager, OpenAPI at ``/openapi.json``.

Routes are thin: they parse the request, call one :class:`~roundhouse.manager.AsyncManager`
method and return its view. Validation of specs happens once, in the manager; errors become
wire errors in :mod:`roundhouse.api.errors`.

This module (and FastAPI with it) is imported by :mod:`roundhouse.api.app` on the first request
that needs it, never at start: the MCP endpoints and ``GET /health`` do without.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse

from roundhouse import __version__
from roundhouse.api.app import gateway_status
from roundhouse.api.errors import FastJSONResponse, install_error_handlers
from roundhouse.errors import InvalidInput, NotFound, NotSupported
from roundhouse.manager import MAX_LOG_LINES, AsyncManager, parse_spec
from roundhouse.spec import SLUG_PATTERN, ServerSpec

__all__ = ["build_management_app"]

#: How often a quiet ``logs?follow=true`` stream checks that its client is still there.
FOLLOW_CHECK_SECONDS = 1.0

_SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServerSpec"}}},
    }
}
_PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON merge patch (RFC 7386) over the ServerSpec; null removes a field",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise InvalidInput("request body is empty; a JSON object is expected", field="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", field="body") from None


async def _json_object(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", field="body")
    return body


def build_management_app(manager: AsyncManager) -> FastAPI:
    """The REST API over ``manager``, with its OpenAPI document (``ServerSpec`` included)."""
    app = FastAPI(
        title="Roundhouse",
        version=__version__,
        summary="Gateway and manager for MCP servers",
        default_response_class=FastJSONResponse,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    api = APIRouter(prefix="/api")

    @app.get("/health", tags=["gateway"])
    async def gateway_health(request: Request) -> dict[str, Any]:
        # Served by roundhouse.api.app without loading this module; here for the OpenAPI
        # document and for methods other than GET.
        return gateway_status(manager, request.base_url)

    @api.get("/health", tags=["servers"])
    async def health() -> dict[str, Any]:
        return await manager.health()

    @api.get("/servers", tags=["servers"])
    async def list_servers() -> list[dict[str, Any]]:
        return await manager.list_servers()

    @api.post("/servers", status_code=201, tags=["servers"], openapi_extra=_SPEC_BODY)
    async def create_server(request: Request) -> dict[str, Any]:
        return await manager.create_server(await _json_object(request))

    @api.get("/servers/{slug}", tags=["servers"])
    async def get_server(slug: str) -> dict[str, Any]:
        return await manager.get_server(_slug(slug))

    @api.put("/servers/{slug}", tags=["servers"], openapi_extra=_SPEC_BODY)
    async def put_server(slug: str, request: Request, response: Response) -> dict[str, Any]:
        view, created = await manager.put_server(_slug(slug), await _json_object(request))
        response.status_code = 201 if created else 200
        return view

    @api.patch("/servers/{slug}", tags=["servers"], openapi_extra=_PATCH_BODY)
    async def patch_server(slug: str, request: Request) -> dict[str, Any]:
        # Read like POST and PUT (not through FastAPI's body parsing), so a bad body gets the
        # same answer on every route: 422 naming "body", 413 over the cap.
        slug = _slug(slug)
        return await manager.patch_server(slug, await _json_object(request))

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
        request: Request,
        slug: str,
        lines: Annotated[int, Query(ge=0, le=MAX_LOG_LINES)] = 100,
        follow: bool = False,
    ) -> dict[str, Any] | StreamingResponse:
        slug = _slug(slug)
        if not follow:
            return {"lines": [entry.to_dict() for entry in await manager.logs(slug, lines)]}
        await manager.logs(slug, 0)  # 404 now, not inside the stream
        return StreamingResponse(
            _follow(manager, request, slug, lines), media_type="application/x-ndjson"
        )

    @api.post("/import", tags=["servers"])
    async def import_servers(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("servers"), list):
            raise InvalidInput('expected {"servers": [spec, ...]}', field="servers")
        specs = [await _import_item(manager, n, item) for n, item in enumerate(body["servers"])]
        slugs = [spec.slug for spec in specs]
        if len(set(slugs)) != len(slugs):
            raise InvalidInput("the same slug appears twice", field="servers")
        return {"imported": await manager.import_specs(specs)}

    app.include_router(api)
    original_openapi = app.openapi

    def openapi_with_spec() -> dict[str, Any]:
        schema = original_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ServerSpec" in components:
            return schema  # FastAPI keeps the document; it was completed the first time
        # Built here, on the first /openapi.json: the routes themselves never need it.
        spec_schema = ServerSpec.model_json_schema(
            mode="validation", ref_template="#/components/schemas/{model}"
        )
        components["ServerSpec"] = {k: v for k, v in spec_schema.items() if k != "$defs"}
        for name, definition in spec_schema.get("$defs", {}).items():
            components.setdefault(name, definition)
        return schema

    app.openapi = openapi_with_spec  # type: ignore[method-assign]
    return app


async def _import_item(manager: AsyncManager, n: int, item: Any) -> ServerSpec:
    """One spec of an import; errors name it (``servers.1.priority``). A masked secret in it
    (an exported spec) keeps the stored one, as on PUT."""
    old = None
    slug = item.get("slug") if isinstance(item, dict) else None
    if isinstance(slug, str) and re.match(SLUG_PATTERN, slug):
        with contextlib.suppress(NotFound):
            old = (await manager.store.get_server(slug)).spec
    try:
        return parse_spec(item, old=old)
    except InvalidInput as exc:
        field = f"servers.{n}.{exc.field}" if exc.field else f"servers.{n}"
        raise InvalidInput(f"servers[{n}]: {exc.message}", field=field, data=exc.data) from None
    except NotSupported as exc:
        inner = exc.data.get("field") if isinstance(exc.data, dict) else None
        field = f"servers.{n}.{inner}" if inner else f"servers.{n}"
        raise NotSupported(f"servers[{n}]: {exc.message}", data={"field": field}) from None


def _slug(slug: str) -> str:
    if len(slug) > 40 or not re.match(SLUG_PATTERN, slug):
        raise InvalidInput(f"{slug[:60]!r} is not a valid slug", field="slug")
    return slug


async def _follow(
    manager: AsyncManager, request: Request, slug: str, lines: int
) -> AsyncIterator[bytes]:
    """The last ``lines`` lines, then every new one, as NDJSON, until the client goes away or
    the gateway shuts down (checked every :data:`FOLLOW_CHECK_SECONDS` on a quiet server)."""
    async with manager.follow_logs(slug) as subscription:
        # Subscribed before reading the tail, so no line falls between the two; a line in both
        # is recognised by its timestamp and sent once.
        last = 0.0
        for entry in await manager.logs(slug, lines):
            last = entry.ts
            yield orjson.dumps(entry.to_dict()) + b"\n"
        while not manager.closing.is_set():
            try:
                event = await asyncio.wait_for(subscription.get(), FOLLOW_CHECK_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            data = event.data
            if data["at"] <= last:
                continue
            line = {"ts": data["at"], "instance": data["instance"], "line": data["line"]}
            yield orjson.dumps(line) + b"\n"
