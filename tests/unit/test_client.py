"""RemoteClient against a real HTTP server on 127.0.0.1 that speaks the REST API's contract.

``StandInGateway`` below is a STAND-IN: a small Starlette app that answers the way the
management API's contract says (routes, status codes, views, the error body, NDJSON log
following), with servers held in a dict. It exists because the real API (``roundhouse.api``)
is being written at the same time; once it runs, these tests (and ``test_cli.py``, which
imports the stand-in from here) should be pointed at a real gateway and the stand-in deleted.
It is served by uvicorn in a thread, so the client talks over a real socket.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from roundhouse.client import GatewayUnreachable, RemoteClient
from roundhouse.errors import Conflict, InvalidInput, NotFound, RoundhouseError
from roundhouse.spec import SLUG_PATTERN, ServerSpec, public_spec

# ------------------------------------------------------------------------- the stand-in gateway


def instance(server: str, ordinal: int = 0, **fields: Any) -> dict[str, Any]:
    """An instance view, running and healthy unless ``fields`` say otherwise."""
    view: dict[str, Any] = {
        "id": f"{server}-{ordinal:08x}",
        "server": server,
        "ordinal": ordinal,
        "state": "running",
        "health": "healthy",
        "pid": 4000 + ordinal,
        "port": None,
        "endpoint": None,
        "started_at": "2025-01-01T00:00:00+00:00",
        "stopped_at": None,
        "uptime_seconds": 192.5,
        "last_health_check": None,
        "response_time_ms": 1.5,
        "restart_count": 0,
        "last_exit_code": None,
        "last_error": None,
        "stderr_tail": [],
    }
    view.update(fields)
    return view


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "field": field}}, status)


class StandInGateway:
    """Answers as the gateway's REST API would; records every request it gets."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.log_lines: list[dict[str, Any]] = []
        #: Lines the follow stream sends after the past ones, a little apart.
        self.new_lines: list[dict[str, Any]] = []
        #: Whether the follow stream ends after ``new_lines`` (else it waits for more, forever).
        self.end_follow = True
        self.follow_disconnected = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/health", self.gateway_health),
                Route("/api/health", self.health),
                Route("/api/servers", self.servers_route, methods=["GET", "POST"]),
                Route(
                    "/api/servers/{slug}",
                    self.server_route,
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                ),
                Route("/api/servers/{slug}/instances", self.instances),
                Route("/api/servers/{slug}/logs", self.logs),
                Route("/api/servers/{slug}/{verb}", self.steer, methods=["POST"]),
                Route("/api/import", self.import_servers, methods=["POST"]),
            ]
        )

    def add(self, spec: dict[str, Any], instances: list[dict[str, Any]] | None = None) -> None:
        """Put a server in the registry directly, as if it had been added earlier."""
        model = ServerSpec.model_validate(spec)
        self.servers[model.slug] = self._view(model, instances)

    # -- the contract ------------------------------------------------------------------------

    def _view(self, spec: ServerSpec, instances: list[dict[str, Any]] | None) -> dict[str, Any]:
        instances = instances if instances is not None else []
        return {
            "slug": spec.slug,
            "name": spec.display_name,
            "transport": spec.transport.type,
            "enabled": spec.enabled,
            "desired_instances": spec.instances.min if spec.enabled else 0,
            "state": instances[0]["state"] if instances else "pending",
            "health": instances[0]["health"] if instances else "unknown",
            "created_at": "2025-01-01T00:00:00+00:00",
            "updated_at": "2025-01-01T00:00:00+00:00",
            "spec": public_spec(spec),
            "instances": instances,
        }

    async def _record(self, request: Request) -> Any:
        body = await request.body()
        data = await request.json() if body else None
        self.requests.append((request.method, request.url.path, data))
        return data

    def _parse(self, data: Any, slug: str | None = None) -> ServerSpec | JSONResponse:
        if slug is not None:
            data = {**data, "slug": slug}
        try:
            return ServerSpec.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(422, f"{field}: {first['msg']}", field)

    def _find(self, slug: str) -> dict[str, Any] | JSONResponse:
        if not re.fullmatch(SLUG_PATTERN, slug):
            return _error(422, f"{slug!r} is not a valid slug", "slug")
        if slug not in self.servers:
            return _error(404, f"no server {slug!r}")
        return self.servers[slug]

    async def gateway_health(self, request: Request) -> Response:
        await self._record(request)
        endpoints = {"api": f"{request.base_url}api"}
        return JSONResponse(
            {"status": "ok", "version": "0.1.0", "uptime_seconds": 3725.0, "endpoints": endpoints}
        )

    async def health(self, request: Request) -> Response:
        await self._record(request)
        views = list(self.servers.values())
        return JSONResponse(
            {
                "total_servers": len(views),
                "healthy_servers": sum(v["health"] == "healthy" for v in views),
                "degraded_servers": sum(v["health"] == "degraded" for v in views),
                "unhealthy_servers": sum(v["health"] == "unhealthy" for v in views),
                "avg_response_time_ms": 1.5 if views else None,
            }
        )

    async def servers_route(self, request: Request) -> Response:
        data = await self._record(request)
        if request.method == "GET":
            return JSONResponse(list(self.servers.values()))
        spec = self._parse(data)
        if isinstance(spec, JSONResponse):
            return spec
        if spec.slug in self.servers:
            return _error(409, f"a server {spec.slug!r} exists already")
        self.servers[spec.slug] = self._view(spec, None)
        return JSONResponse(self.servers[spec.slug], 201)

    async def server_route(self, request: Request) -> Response:
        data = await self._record(request)
        slug = request.path_params["slug"]
        if request.method == "PUT":
            spec = self._parse(data, slug)
            if isinstance(spec, JSONResponse):
                return spec
            created = slug not in self.servers
            self.servers[slug] = self._view(spec, None)
            return JSONResponse(self.servers[slug], 201 if created else 200)
        view = self._find(slug)
        if isinstance(view, JSONResponse):
            return view
        if request.method == "DELETE":
            del self.servers[slug]
            return Response(status_code=204)
        if request.method == "PATCH":
            merged = {**view["spec"], **data}
            spec = self._parse(merged)
            if isinstance(spec, JSONResponse):
                return spec
            self.servers[slug] = view = self._view(spec, view["instances"])
        return JSONResponse(view)

    async def steer(self, request: Request) -> Response:
        data = await self._record(request)
        slug, verb = request.path_params["slug"], request.path_params["verb"]
        view = self._find(slug)
        if isinstance(view, JSONResponse):
            return view
        if verb == "scale":
            count = data.get("instances") if isinstance(data, dict) else None
            if not isinstance(count, int) or count < 0:
                return _error(422, "instances must be an integer >= 0", "instances")
            view["desired_instances"] = count
            view["instances"] = [instance(slug, n) for n in range(count)]
        elif verb in ("start", "restart"):
            view["instances"] = [instance(slug, n) for n in range(view["desired_instances"])]
        elif verb == "stop":
            view["instances"] = []
        else:
            return _error(404, f"no action {verb!r}")
        view["state"] = "running" if view["instances"] else "stopped"
        return JSONResponse(view)

    async def instances(self, request: Request) -> Response:
        await self._record(request)
        view = self._find(request.path_params["slug"])
        return view if isinstance(view, JSONResponse) else JSONResponse(view["instances"])

    async def logs(self, request: Request) -> Response:
        await self._record(request)
        view = self._find(request.path_params["slug"])
        if isinstance(view, JSONResponse):
            return view
        count = int(request.query_params.get("lines", "100"))
        past = self.log_lines[-count:] if count else []
        if request.query_params.get("follow") != "true":
            return JSONResponse({"lines": past})
        return StreamingResponse(self._follow(past), media_type="application/x-ndjson")

    async def _follow(self, past: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        import json

        try:
            for line in past:
                yield json.dumps(line).encode() + b"\n"
            for line in self.new_lines:
                await asyncio.sleep(0.05)
                yield json.dumps(line).encode() + b"\n"
            while not self.end_follow:
                await asyncio.sleep(0.05)
        finally:
            self.follow_disconnected.set()

    async def import_servers(self, request: Request) -> Response:
        data = await self._record(request)
        specs = []
        for item in data["servers"]:
            spec = self._parse(item)
            if isinstance(spec, JSONResponse):
                return spec
            specs.append(spec)
        for spec in specs:
            self.servers[spec.slug] = self._view(spec, None)
        return JSONResponse({"imported": [spec.slug for spec in specs]})


@contextmanager
def serving(gateway: StandInGateway) -> Iterator[str]:
    """Serve the stand-in with uvicorn in a thread on a free loopback port; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        gateway.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "stand-in did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def free_port_url() -> str:
    """A loopback URL where nothing listens (a port just bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


TIME_SPEC: dict[str, Any] = {
    "slug": "time",
    "name": "Time",
    "transport": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]},
}


@pytest.fixture
def gateway() -> StandInGateway:
    return StandInGateway()


@pytest.fixture
def client(gateway: StandInGateway) -> Iterator[RemoteClient]:
    with serving(gateway) as url, RemoteClient(url) as remote:
        yield remote


# --------------------------------------------------------------------------------------- tests


def test_list_and_get_return_the_api_views(gateway: StandInGateway, client: RemoteClient) -> None:
    gateway.add(TIME_SPEC, [instance("time")])

    servers = client.list_servers()
    one = client.get_server("time")

    assert [server["slug"] for server in servers] == ["time"]
    assert one["spec"]["transport"]["command"] == "uvx"
    assert one["instances"][0]["state"] == "running"
    assert client.instances("time") == one["instances"]


def test_create_put_patch_and_delete_a_server(
    gateway: StandInGateway, client: RemoteClient
) -> None:
    created = client.create_server(TIME_SPEC)
    replaced, was_created = client.put_server("time", {**TIME_SPEC, "priority": 7})
    fresh, fresh_created = client.put_server("other", {"transport": {"url": "https://x.test/mcp"}})
    patched = client.patch_server("time", {"tags": ["clock"]})
    client.delete_server("time")

    assert created["slug"] == "time"
    assert (replaced["spec"]["priority"], was_created) == (7, False)
    assert (fresh["slug"], fresh_created) == ("other", True)
    assert patched["spec"]["tags"] == ["clock"]
    assert list(gateway.servers) == ["other"]
    assert ("DELETE", "/api/servers/time", None) in gateway.requests


def test_start_stop_restart_and_scale_post_to_their_routes(
    gateway: StandInGateway, client: RemoteClient
) -> None:
    gateway.add(TIME_SPEC)

    scaled = client.scale("time", 3)
    stopped = client.stop("time")
    started = client.start("time")
    restarted = client.restart("time")

    assert len(scaled["instances"]) == 3
    assert stopped["state"] == "stopped"
    assert started["state"] == restarted["state"] == "running"
    posts = [(method, path, body) for method, path, body in gateway.requests]
    assert posts == [
        ("POST", "/api/servers/time/scale", {"instances": 3}),
        ("POST", "/api/servers/time/stop", None),
        ("POST", "/api/servers/time/start", None),
        ("POST", "/api/servers/time/restart", None),
    ]


def test_a_missing_server_raises_not_found_with_the_api_message(client: RemoteClient) -> None:
    with pytest.raises(NotFound, match="no server 'ghost'"):
        client.get_server("ghost")


def test_a_taken_slug_raises_conflict(gateway: StandInGateway, client: RemoteClient) -> None:
    gateway.add(TIME_SPEC)
    with pytest.raises(Conflict, match="exists already"):
        client.create_server(TIME_SPEC)


def test_a_rejected_spec_raises_invalid_input_naming_the_field(client: RemoteClient) -> None:
    bad = {"slug": "time", "transport": {"type": "stdio", "command": ""}}
    with pytest.raises(InvalidInput) as caught:
        client.create_server(bad)
    assert caught.value.field == "transport.stdio.command"
    assert "transport.stdio.command" in caught.value.message


def test_an_answer_without_the_error_body_asks_whether_it_is_a_gateway(
    gateway: StandInGateway,
) -> None:
    # Something else listens there: a path the stand-in does not know gets a plain 404.
    with (
        serving(gateway) as url,
        RemoteClient(f"{url}/not-roundhouse") as remote,
        pytest.raises(NotFound, match="is it a Roundhouse gateway"),
    ):
        remote.list_servers()


def test_nothing_listening_raises_gateway_unreachable_naming_the_url() -> None:
    url = free_port_url()
    with RemoteClient(url) as remote, pytest.raises(GatewayUnreachable) as caught:
        remote.list_servers()
    assert isinstance(caught.value, RoundhouseError)
    assert caught.value.message == (
        f"no Roundhouse gateway at {url} — start one with `roundhouse up`"
    )


def test_logs_returns_the_last_lines(gateway: StandInGateway, client: RemoteClient) -> None:
    gateway.add(TIME_SPEC)
    gateway.log_lines = [{"ts": float(n), "instance": "time-0", "line": f"l{n}"} for n in range(5)]

    lines = client.logs("time", lines=2)

    assert [line["line"] for line in lines] == ["l3", "l4"]
    assert gateway.requests[-1][:2] == ("GET", "/api/servers/time/logs")


def test_follow_logs_yields_past_then_new_lines_and_disconnects_when_closed(
    gateway: StandInGateway, client: RemoteClient
) -> None:
    gateway.add(TIME_SPEC)
    gateway.log_lines = [{"ts": 1.0, "instance": "time-0", "line": "old"}]
    gateway.new_lines = [{"ts": 2.0 + n, "instance": "time-0", "line": f"new{n}"} for n in range(2)]
    gateway.end_follow = False  # like the real gateway: the stream only ends when we leave

    stream = client.follow_logs("time", lines=10)
    seen = [next(stream)["line"] for _ in range(3)]
    stream.close()

    assert seen == ["old", "new0", "new1"]
    assert gateway.follow_disconnected.wait(5), "the stand-in never saw the client leave"


def test_follow_logs_of_a_missing_server_raises_not_found(client: RemoteClient) -> None:
    with pytest.raises(NotFound):
        next(client.follow_logs("ghost"))


def test_health_and_gateway_status(gateway: StandInGateway, client: RemoteClient) -> None:
    gateway.add(TIME_SPEC, [instance("time")])

    assert client.health()["healthy_servers"] == 1
    assert client.gateway()["status"] == "ok"


def test_import_servers_posts_the_specs_and_returns_the_slugs(
    gateway: StandInGateway, client: RemoteClient
) -> None:
    second = {"slug": "remote", "transport": {"type": "http", "url": "https://x.test/mcp"}}

    imported = client.import_servers([TIME_SPEC, second])

    assert imported == ["time", "remote"]
    assert gateway.requests[-1] == ("POST", "/api/import", {"servers": [TIME_SPEC, second]})
