"""The management API over a real socket: uvicorn on 127.0.0.1, an httpx client, real processes.

Every route, secrets that never leave, bad input that names its field and writes nothing, the
Origin/Host guard, and hostile requests that must end in a clean 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
import pytest_asyncio

from roundhouse.manager import AsyncManager
from roundhouse.spec import MASK, spec_to_storage

from .conftest import eventually, stdio_spec, wait_state
from .served import serve

SECRET_TOKEN = "tok-7f3a9c1e-never-shown"
SECRET_ENV = "env-51bd2e08-never-shown"
SECRET_HEADER = "hdr-c04e6a9b-never-shown"
SECRETS = (SECRET_TOKEN, SECRET_ENV, SECRET_HEADER)


@dataclass
class Gateway:
    manager: AsyncManager
    client: httpx.AsyncClient
    port: int
    #: Every response body the client saw, to check that no secret ever left.
    seen: list[bytes]
    #: Every 5xx answer; the ``gateway`` fixture fails the test that got one.
    server_errors: list[str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def snapshot(self) -> list[tuple[str, dict[str, Any], int, int]]:
        """What the registry holds, secrets in clear, to prove a request wrote nothing."""
        return [
            (r.slug, spec_to_storage(r.spec), r.desired_instances, r.generation)
            for r in await self.manager.store.list_servers()
        ]


# One gateway for the whole module: starting a manager and uvicorn costs ~0.3 s, stopping
# uvicorn ~0.2 s, and this module sends hundreds of requests in dozens of tests. Each test
# still starts from an empty registry (``gateway`` removes every server after it).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    async with serve(tmp_path_factory.mktemp("api")) as gateway_:
        manager, port = gateway_.manager, gateway_.port
        seen: list[bytes] = []
        server_errors: list[str] = []

        async def remember(response: httpx.Response) -> None:
            if response.status_code >= 500:
                request = response.request
                server_errors.append(f"{request.method} {request.url} → {response.status_code}")
            # Streamed responses are read by the test itself; the rest is recorded here.
            if "ndjson" not in response.headers.get("content-type", ""):
                seen.append(await response.aread())

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            trust_env=False,
            timeout=10,
            event_hooks={"response": [remember]},
        ) as client:
            yield Gateway(manager, client, port, seen, server_errors)


@pytest_asyncio.fixture(loop_scope="module")
async def gateway(served: Gateway) -> AsyncIterator[Gateway]:
    served.seen.clear()
    served.server_errors.clear()
    yield served
    try:
        assert not served.server_errors, f"the API answered 5xx: {served.server_errors}"
    finally:
        manager = served.manager
        for server in await manager.store.list_servers():
            await manager.delete_server(server.slug)
        assert manager.supervisor.all_workers() == []


def assert_no_secret_in(data: bytes | str) -> None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for secret in SECRETS:
        assert secret not in text, f"secret {secret!r} leaked"


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["code"], int) and error["message"]
    return error


def raw(slug: str = "raw", **extra: Any) -> dict[str, Any]:
    return stdio_spec(slug, "raw_server.py", **extra)


def dormant(slug: str = "dormant", **extra: Any) -> dict[str, Any]:
    """A valid spec that is never started, for tests about the registry alone."""
    return raw(slug, enabled=False, **extra)


# --- every route ----------------------------------------------------------------------------


async def test_the_gateway_health_route_says_ok_and_where_the_api_is(gateway: Gateway):
    response = await gateway.client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["endpoints"]["api"] == f"{gateway.base_url}/api"
    assert body["endpoints"]["openapi"] == f"{gateway.base_url}/openapi.json"
    assert body["uptime_seconds"] >= 0


async def test_openapi_lists_every_route_and_the_server_spec_schema(gateway: Gateway):
    response = await gateway.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert set(paths["/api/servers"]) >= {"get", "post"}
    assert set(paths["/api/servers/{slug}"]) >= {"get", "put", "patch", "delete"}
    for action in ("start", "stop", "restart", "scale"):
        assert "post" in paths[f"/api/servers/{{slug}}/{action}"]
    for read in ("instances", "logs"):
        assert "get" in paths[f"/api/servers/{{slug}}/{read}"]
    assert "get" in paths["/api/health"]
    assert "post" in paths["/api/import"]
    assert "get" in paths["/health"]
    spec = schema["components"]["schemas"]["ServerSpec"]
    assert {"slug", "transport", "auth", "priority", "instances", "spawn"} <= set(
        spec["properties"]
    )
    assert spec["additionalProperties"] is False
    body = paths["/api/servers"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/ServerSpec"
    # Every $ref resolves inside the document.
    for ref in _refs(schema):
        assert ref.removeprefix("#/components/schemas/") in schema["components"]["schemas"], ref


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_a_stdio_server_created_through_the_api_reaches_running_with_its_ls_fields(
    gateway: Gateway,
):
    client = gateway.client
    created = await client.post("/api/servers", json=raw())
    assert created.status_code == 201, created.text
    assert created.json()["slug"] == "raw"
    await wait_state(gateway.manager, "raw", "running")

    async def healthy() -> bool:
        return bool((await client.get("/api/servers/raw")).json()["health"] == "healthy")

    await eventually(healthy, what="raw to be healthy in the API")
    view = (await client.get("/api/servers/raw")).json()
    assert view["state"] == "running"
    assert view["transport"] == "stdio"
    assert view["desired_instances"] == 1
    (instance,) = view["instances"]
    assert instance["state"] == "running"
    assert instance["health"] == "healthy"
    assert psutil.pid_exists(instance["pid"])
    assert instance["uptime_seconds"] >= 0
    assert instance["restart_count"] == 0
    assert "port" in instance and "started_at" in instance

    listed = (await client.get("/api/servers")).json()
    assert [server["slug"] for server in listed] == ["raw"]
    assert listed[0]["instances"][0]["pid"] == instance["pid"]
    assert (await client.get("/api/servers/raw/instances")).json()[0]["pid"] == instance["pid"]


async def test_stop_start_and_restart_through_the_api_drive_the_process(gateway: Gateway):
    client, manager = gateway.client, gateway.manager
    assert (await client.post("/api/servers", json=raw())).status_code == 201
    await wait_state(manager, "raw", "running")
    first_pid = (await client.get("/api/servers/raw/instances")).json()[0]["pid"]

    stopped = await client.post("/api/servers/raw/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["enabled"] is False

    async def gone() -> bool:
        return not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == "zombie"

    await eventually(gone, what="the stopped process to exit")
    assert (await client.get("/api/servers/raw")).json()["state"] in ("stopped", "stopping")

    started = await client.post("/api/servers/raw/start")
    assert started.status_code == 200 and started.json()["enabled"] is True
    await wait_state(manager, "raw", "running")
    second_pid = (await client.get("/api/servers/raw/instances")).json()[0]["pid"]
    assert second_pid != first_pid

    restarted = await client.post("/api/servers/raw/restart")
    assert restarted.status_code == 200

    async def new_pid() -> bool:
        instances = (await client.get("/api/servers/raw/instances")).json()
        return bool(
            instances[0]["pid"] not in (None, second_pid) and instances[0]["state"] == "running"
        )

    await eventually(new_pid, what="a restarted process")


async def test_scale_changes_the_number_of_instances_and_refuses_out_of_range(gateway: Gateway):
    client, manager = gateway.client, gateway.manager
    spec = raw(instances={"min": 1, "max": 3})
    assert (await client.post("/api/servers", json=spec)).status_code == 201
    scaled = await client.post("/api/servers/raw/scale", json={"instances": 2})
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["desired_instances"] == 2
    await wait_state(manager, "raw", "running", ordinal=1)
    instances = (await client.get("/api/servers/raw/instances")).json()
    assert len(instances) == 2 and len({i["pid"] for i in instances}) == 2

    before = await gateway.snapshot()
    for out_of_range in (4, 0, -1, 65, 10**30):
        error = error_of(
            await client.post("/api/servers/raw/scale", json={"instances": out_of_range}), 422
        )
        assert error["field"] == "instances", (out_of_range, error)
    for wrong_type in (True, 2.0, 1.5, "2", None, [2], {"n": 2}):
        error = error_of(
            await client.post("/api/servers/raw/scale", json={"instances": wrong_type}), 422
        )
        assert error["field"] == "instances", (wrong_type, error)
    error = error_of(await client.post("/api/servers/raw/scale", json={}), 422)
    assert error["field"] == "instances"
    assert await gateway.snapshot() == before

    down = await client.post("/api/servers/raw/scale", json={"instances": 1})
    assert down.status_code == 200 and down.json()["desired_instances"] == 1

    async def one_left() -> bool:
        return len((await client.get("/api/servers/raw/instances")).json()) == 1

    await eventually(one_left, what="scale down to one instance")


async def test_logs_return_the_last_lines_of_stderr(gateway: Gateway):
    client = gateway.client
    spec = stdio_spec("noisy", "misbehaving_server.py", "--stderr-lines", "5")
    assert (await client.post("/api/servers", json=spec)).status_code == 201

    async def five_lines() -> bool:
        lines = (await client.get("/api/servers/noisy/logs", params={"lines": 100})).json()
        return sum("stderr line" in entry["line"] for entry in lines["lines"]) == 5

    await eventually(five_lines, what="five stderr lines in the logs")
    response = await client.get("/api/servers/noisy/logs", params={"lines": 2})
    assert response.status_code == 200
    lines = response.json()["lines"]
    assert [entry["line"] for entry in lines] == ["stderr line 4", "stderr line 5"]
    assert all({"ts", "instance", "line"} <= set(entry) for entry in lines)
    assert (await client.get("/api/servers/noisy/logs", params={"lines": 0})).json() == {
        "lines": []
    }
    default = (await client.get("/api/servers/noisy/logs")).json()["lines"]
    assert [e["line"] for e in default][-5:] == [f"stderr line {n}" for n in range(1, 6)]


async def test_following_logs_streams_the_tail_then_new_lines_as_ndjson(gateway: Gateway):
    client, manager = gateway.client, gateway.manager
    spec = stdio_spec("noisy", "misbehaving_server.py", "--stderr-lines", "5")
    assert (await client.post("/api/servers", json=spec)).status_code == 201
    await wait_state(manager, "noisy", "running")

    async def five_lines() -> bool:
        return len(await manager.logs("noisy", 100)) >= 5

    await eventually(five_lines, what="five stderr lines read")
    params = {"follow": "true", "lines": 3}
    async with client.stream("GET", "/api/servers/noisy/logs", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = response.aiter_lines()
        tail = [json.loads(await anext(lines)) for _ in range(3)]
        assert [entry["line"] for entry in tail] == [f"stderr line {n}" for n in (3, 4, 5)]
        # A restart runs the script again: its lines arrive on the open stream.
        assert (await client.post("/api/servers/noisy/restart")).status_code == 200
        fresh = []
        while len(fresh) < 5:
            entry = json.loads(await asyncio.wait_for(anext(lines), timeout=10))
            if entry["line"].startswith("stderr line"):
                fresh.append(entry)
        assert [entry["line"] for entry in fresh] == [f"stderr line {n}" for n in range(1, 6)]
        assert fresh[0]["ts"] > tail[-1]["ts"]
    # The gateway still answers after the client went away mid-stream.
    assert (await client.get("/api/health")).status_code == 200


async def test_api_health_counts_servers_by_health(gateway: Gateway):
    client, manager = gateway.client, gateway.manager
    empty = (await client.get("/api/health")).json()
    assert empty == {
        "total_servers": 0,
        "healthy_servers": 0,
        "degraded_servers": 0,
        "unhealthy_servers": 0,
        "avg_response_time_ms": 0.0,
    }
    assert (await client.post("/api/servers", json=raw())).status_code == 201
    assert (await client.post("/api/servers", json=dormant())).status_code == 201
    await wait_state(manager, "raw", "running")

    async def one_healthy() -> bool:
        return bool((await client.get("/api/health")).json()["healthy_servers"] == 1)

    await eventually(one_healthy, what="one healthy server")
    health = (await client.get("/api/health")).json()
    assert set(health) == set(empty)
    assert health["total_servers"] == 2
    assert health["degraded_servers"] == health["unhealthy_servers"] == 0
    assert isinstance(health["avg_response_time_ms"], float)
    assert health["avg_response_time_ms"] >= 0


async def test_put_creates_with_201_then_replaces_with_200(gateway: Gateway):
    client = gateway.client
    created = await client.put("/api/servers/dormant", json=dormant(priority=5))
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["priority"] == 5
    replaced = await client.put("/api/servers/dormant", json=dormant(priority=7))
    assert replaced.status_code == 200
    assert replaced.json()["spec"]["priority"] == 7
    # The slug may be left out of the body: the URL names the server.
    body = dormant(priority=9)
    del body["slug"]
    assert (await client.put("/api/servers/dormant", json=body)).json()["spec"]["priority"] == 9
    assert (await client.get("/api/servers/dormant")).json()["spec"]["priority"] == 9


async def test_patch_applies_a_json_merge_patch(gateway: Gateway):
    client = gateway.client
    spec = dormant(priority=5, tags=["a", "b"], name="Dormant")
    assert (await client.post("/api/servers", json=spec)).status_code == 201
    patched = await client.patch(
        "/api/servers/dormant",
        json={"priority": 200, "tags": ["c"], "name": None, "timeouts": {"call": 5}},
    )
    assert patched.status_code == 200, patched.text
    view = patched.json()["spec"]
    assert view["priority"] == 200
    assert view["tags"] == ["c"]
    assert view["name"] is None
    assert view["timeouts"] == {"start": 10, "stop": 3, "call": 5}
    assert view["transport"]["args"] == spec["transport"]["args"]
    stored = (await gateway.manager.store.get_server("dormant")).spec
    assert stored.priority == 200 and stored.timeouts.call == 5


async def test_delete_answers_204_then_the_server_is_gone_and_its_process_too(gateway: Gateway):
    client, manager = gateway.client, gateway.manager
    assert (await client.post("/api/servers", json=raw())).status_code == 201
    await wait_state(manager, "raw", "running")
    pid = (await client.get("/api/servers/raw/instances")).json()[0]["pid"]
    deleted = await client.delete("/api/servers/raw")
    assert deleted.status_code == 204
    assert deleted.content == b""
    error_of(await client.get("/api/servers/raw"), 404)
    error_of(await client.delete("/api/servers/raw"), 404)
    assert await manager.store.list_servers() == []

    def exited() -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"

    await eventually(exited, what="the deleted server's process to exit")


async def test_import_registers_every_server_of_the_list(gateway: Gateway):
    client = gateway.client
    body = {"servers": [dormant("one"), dormant("two", priority=3)]}
    response = await client.post("/api/import", json=body)
    assert response.status_code == 200, response.text
    assert sorted(response.json()["imported"]) == ["one", "two"]
    assert [s["slug"] for s in (await client.get("/api/servers")).json()] == ["one", "two"]
    # Importing again replaces, it does not conflict.
    again = await client.post("/api/import", json={"servers": [dormant("two", priority=4)]})
    assert again.status_code == 200
    assert (await client.get("/api/servers/two")).json()["spec"]["priority"] == 4


async def test_an_import_with_one_bad_spec_writes_none_of_them(gateway: Gateway):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant("keep"))).status_code == 201
    before = await gateway.snapshot()
    bad = dormant("two", priority=256)
    error = error_of(await client.post("/api/import", json={"servers": [dormant("one"), bad]}), 422)
    assert error["field"] == "servers.1.priority"
    twice = {"servers": [dormant("one"), dormant("one")]}
    assert error_of(await client.post("/api/import", json=twice), 422)["field"] == "servers"
    for shape in ({"servers": {}}, {"servers": "x"}, {}, [], {"mcpServers": {}}):
        assert error_of(await client.post("/api/import", json=shape), 422)["field"] == "servers"
    spawn = {"servers": [dormant("one"), dormant("three", spawn="per-call")]}
    error = error_of(await client.post("/api/import", json=spawn), 422)
    assert error["field"] == "servers.1.spawn"
    assert "not yet supported" in error["message"]
    assert await gateway.snapshot() == before


# --- secrets --------------------------------------------------------------------------------


def _secret_stdio() -> dict[str, Any]:
    """A running server: its instance views must not carry the secrets either."""
    spec = raw("secret-stdio", auth={"type": "bearer", "token": SECRET_TOKEN})
    spec["transport"]["env"] = {"API_TOKEN": SECRET_ENV, "OTHER": SECRET_ENV}
    return spec


def _secret_http() -> dict[str, Any]:
    return {
        "slug": "secret-http",
        "enabled": False,
        "transport": {
            "type": "http",
            "url": "https://mcp.example.com/mcp",
            "headers": {"X-Secret": SECRET_HEADER},
        },
        "auth": {"type": "api_key", "key": SECRET_TOKEN, "header": "X-Key"},
    }


async def test_secrets_are_masked_in_every_view(gateway: Gateway):
    client = gateway.client
    for spec in (_secret_stdio(), _secret_http()):
        created = await client.post("/api/servers", json=spec)
        assert created.status_code == 201, created.text
    stdio = (await client.get("/api/servers/secret-stdio")).json()["spec"]
    assert stdio["auth"]["token"] == MASK
    assert stdio["transport"]["env"] == {"API_TOKEN": MASK, "OTHER": MASK}
    http = (await client.get("/api/servers/secret-http")).json()["spec"]
    assert http["auth"]["key"] == MASK
    assert http["transport"]["headers"] == {"X-Secret": MASK}
    await wait_state(gateway.manager, "secret-stdio", "running")
    await client.get("/api/servers")
    await client.get("/api/health")
    await client.get("/api/servers/secret-stdio/instances")
    await client.get("/api/servers/secret-stdio/logs")
    await client.get("/openapi.json")
    assert gateway.seen
    for body in gateway.seen:
        assert_no_secret_in(body)


async def test_a_put_of_the_get_body_keeps_every_secret(gateway: Gateway):
    client, store = gateway.client, gateway.manager.store
    for spec in (_secret_stdio(), _secret_http()):
        assert (await client.post("/api/servers", json=spec)).status_code == 201
    for slug in ("secret-stdio", "secret-http"):
        before = spec_to_storage((await store.get_server(slug)).spec)
        shown = (await client.get(f"/api/servers/{slug}")).json()["spec"]
        shown["priority"] = 42
        put = await client.put(f"/api/servers/{slug}", json=shown)
        assert put.status_code == 200, put.text
        after = spec_to_storage((await store.get_server(slug)).spec)
        assert after["priority"] == 42
        assert after["auth"] == before["auth"]
        assert after["transport"] == before["transport"]
    stored = (await store.get_server("secret-stdio")).spec
    assert stored.auth.token is not None and stored.auth.token.get_secret_value() == SECRET_TOKEN
    assert stored.transport.env["API_TOKEN"] == SECRET_ENV  # type: ignore[union-attr]
    for body in gateway.seen:
        assert_no_secret_in(body)


async def test_a_patch_and_an_import_of_the_shown_spec_keep_every_secret(gateway: Gateway):
    client, store = gateway.client, gateway.manager.store
    assert (await client.post("/api/servers", json=_secret_http())).status_code == 201
    before = spec_to_storage((await store.get_server("secret-http")).spec)
    patched = await client.patch("/api/servers/secret-http", json={"priority": 1})
    assert patched.status_code == 200, patched.text
    shown = patched.json()["spec"]
    patched = await client.patch("/api/servers/secret-http", json={"auth": shown["auth"]})
    assert patched.status_code == 200, patched.text
    imported = await client.post("/api/import", json={"servers": [shown]})
    assert imported.status_code == 200, imported.text
    after = spec_to_storage((await store.get_server("secret-http")).spec)
    assert after["auth"] == before["auth"]
    assert after["transport"]["headers"] == before["transport"]["headers"]
    for body in gateway.seen:
        assert_no_secret_in(body)


async def test_errors_about_a_body_holding_secrets_do_not_echo_them(gateway: Gateway):
    client = gateway.client
    assert (await client.post("/api/servers", json=_secret_http())).status_code == 201
    before = await gateway.snapshot()
    bad_bodies: list[tuple[str, dict[str, Any]]] = [
        ("priority", {**_secret_http(), "slug": "other", "priority": 256}),
        ("priority", {**_secret_stdio(), "slug": "other", "priority": "high"}),
        (
            "transport",
            {
                **_secret_http(),
                "slug": "other",
                "transport": {
                    "type": "http",
                    "url": "https://mcp.example.com/mcp",
                    "headers": {"X-Secret": SECRET_HEADER + "\r\nX-Injected: 1"},
                },
            },
        ),
        (
            "transport",
            {
                **_secret_stdio(),
                "slug": "other",
                "transport": {
                    "type": "stdio",
                    "command": "/bin/true",
                    "env": {"API_TOKEN": SECRET_ENV + "\x00"},
                },
            },
        ),
        (
            "transport",
            {
                **_secret_stdio(),
                "slug": "other",
                "transport": {
                    "type": "stdio",
                    "command": "/bin/true",
                    "env": {"API_TOKEN": SECRET_ENV * 1000},
                },
            },
        ),
        (
            "auth",
            {
                **_secret_stdio(),
                "slug": "other",
                "auth": {
                    "type": "bearer",
                    "token": SECRET_TOKEN,
                    "surprise": SECRET_TOKEN,
                },
            },
        ),
        (
            "auth",
            {
                **_secret_stdio(),
                "slug": "other",
                "auth": {
                    "type": "bogus",
                    "token": SECRET_TOKEN,
                },
            },
        ),
        ("auth", {**_secret_stdio(), "slug": "other", "auth": {"type": "bearer", "token": 12}}),
    ]
    for field, body in bad_bodies:
        response = await client.post("/api/servers", json=body)
        error = error_of(response, 422)
        assert (error["field"] or "").startswith(field), (field, error)
        assert_no_secret_in(response.content)
    for field, body in bad_bodies[:2]:
        response = await client.put(
            "/api/servers/secret-http", json={**body, "slug": "secret-http"}
        )
        assert (error_of(response, 422)["field"] or "").startswith(field)
        assert_no_secret_in(response.content)
    patch = {"transport": {"headers": {"X-Secret": SECRET_HEADER + "\n"}}}
    response = await client.patch("/api/servers/secret-http", json=patch)
    assert (error_of(response, 422)["field"] or "").startswith("transport")
    assert_no_secret_in(response.content)
    response = await client.patch("/api/servers/secret-http", json={"auth": {"key": 5}})
    assert (error_of(response, 422)["field"] or "").startswith("auth")
    assert_no_secret_in(response.content)
    assert await gateway.snapshot() == before


# --- bad input: status, field, and nothing written -----------------------------------------


def _with_transport(**transport: Any) -> dict[str, Any]:
    spec = dormant("bad")
    spec["transport"] = {**spec["transport"], **transport}
    return spec


BAD_SPECS: list[tuple[str, Any, int, str]] = [
    # (what, body, status, field the error must name)
    ("uppercase slug", dormant("Bad"), 422, "slug"),
    ("slug of 41 characters", dormant("a" * 41), 422, "slug"),
    ("empty slug", dormant(""), 422, "slug"),
    ("slug with a slash", dormant("a/b"), 422, "slug"),
    ("slug of 10k characters", dormant("a" * 10_000), 422, "slug"),
    ("slug not a string", {**dormant(), "slug": 7}, 422, "slug"),
    ("missing slug", {k: v for k, v in dormant().items() if k != "slug"}, 422, "slug"),
    ("empty command", _with_transport(command=""), 422, "transport.command"),
    ("whitespace command", _with_transport(command="  \t "), 422, "transport.command"),
    ("unknown top-level field", {**dormant("bad"), "bogus": 1}, 422, "bogus"),
    ("unknown nested field", _with_transport(bogus=1), 422, "transport.bogus"),
    ("unknown field in timeouts", dormant("bad", timeouts={"strat": 1}), 422, "timeouts.strat"),
    ("priority as a word", dormant("bad", priority="high"), 422, "priority"),
    ("priority 256", dormant("bad", priority=256), 422, "priority"),
    ("priority -1", dormant("bad", priority=-1), 422, "priority"),
    ("instances as a word", dormant("bad", instances="x"), 422, "instances"),
    ("instances min above max", dormant("bad", instances={"min": 3, "max": 2}), 422, "instances"),
    ("args not a list", _with_transport(args="--flag"), 422, "transport.args"),
    ("tags with spaces", dormant("bad", tags=["has space"]), 422, "tags.0"),
    ("spawn per-session", dormant("bad", spawn="per-session"), 422, "spawn"),
    ("spawn unknown", dormant("bad", spawn="sometimes"), 422, "spawn"),
    (
        "local-http without {port}",
        {"slug": "bad", "transport": {"type": "local-http", "command": "server"}},
        422,
        "transport",
    ),
    (
        "http url ftp://x",
        {"slug": "bad", "transport": {"type": "http", "url": "ftp://x"}},
        422,
        "transport.url",
    ),
    (
        "header with CR/LF",
        {
            "slug": "bad",
            "transport": {"type": "http", "url": "http://x", "headers": {"A": "b\r\nC: d"}},
        },
        422,
        "transport.headers",
    ),
    ("sse without a url", {"slug": "bad", "transport": {"type": "sse"}}, 422, "transport.url"),
    (
        "sse url ftp://x",
        {"slug": "bad", "transport": {"type": "sse", "url": "ftp://x/sse"}},
        422,
        "transport.url",
    ),
    (
        "sse with a command",
        {"slug": "bad", "transport": {"type": "sse", "url": "http://x/sse", "command": "y"}},
        422,
        "transport.command",
    ),
    (
        "sse header with CR/LF",
        {
            "slug": "bad",
            "transport": {"type": "sse", "url": "http://x/sse", "headers": {"A": "b\nC: d"}},
        },
        422,
        "transport.headers",
    ),
    ("unknown transport type", _with_transport(type="carrier-pigeon"), 422, "transport"),
    ("transport missing", {"slug": "bad"}, 422, "transport"),
    ("bearer without token", dormant("bad", auth={"type": "bearer"}), 422, "auth"),
    ("a JSON array", [dormant("bad")], 422, "body"),
    ("a JSON string", "spec", 422, "body"),
    ("JSON null", None, 422, "body"),
]


_TRANSPORTS = ("stdio", "http", "sse", "local-http")


def _field_matches(got: str | None, wanted: str) -> bool:
    """``transport.args`` also accepts the discriminated ``transport.stdio.args``, and a
    one-part field (``auth``) accepts any field inside it."""
    if got is None:
        return False
    parts = got.split(".")
    if len(parts) >= 2 and parts[0] == "transport" and parts[1] in _TRANSPORTS:
        parts = [parts[0], *parts[2:]]
    return ".".join(parts) == wanted or ("." not in wanted and parts[0] == wanted)


async def test_every_bad_spec_is_refused_naming_its_field_and_nothing_is_written(
    gateway: Gateway,
):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant("existing"))).status_code == 201
    before = await gateway.snapshot()
    failures = []
    for what, body, status, field in BAD_SPECS:
        attempts = [("POST", "/api/servers", body)]
        if field != "slug":  # on PUT the URL names the server (bad slugs in URLs: below)
            put_body = {**body, "slug": "existing"} if isinstance(body, dict) else body
            attempts.append(("PUT", "/api/servers/existing", put_body))
        for method, url, sent in attempts:
            # content=, not json=: httpx sends no body at all for json=None.
            response = await client.request(method, url, content=json.dumps(sent))
            got = response.json().get("error", {}) if response.status_code >= 400 else {}
            if response.status_code != status or not _field_matches(got.get("field"), field):
                failures.append((what, method, response.status_code, got.get("field")))
    assert not failures, failures
    assert await gateway.snapshot() == before


async def test_spawn_policies_not_built_yet_say_so(gateway: Gateway):
    for policy in ("per-session", "per-principal", "per-call"):
        response = await gateway.client.post("/api/servers", json=dormant(spawn=policy))
        error = error_of(response, 422)
        assert "not yet supported" in error["message"]
        assert error["field"] == "spawn"
    assert await gateway.manager.store.list_servers() == []


async def test_bad_patches_are_refused_naming_their_field_and_nothing_is_written(
    gateway: Gateway,
):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant())).status_code == 201
    before = await gateway.snapshot()
    cases: list[tuple[Any, str]] = [
        ({"priority": 256}, "priority"),
        ({"slug": "other"}, "slug"),
        ({"transport": {"command": ""}}, "transport.command"),
        ({"transport": {"bogus": 1}}, "transport.bogus"),
        ({"bogus": 1}, "bogus"),
        ({"transport": None}, "transport"),
        ({"spawn": "per-session"}, "spawn"),
        ([{"priority": 1}], "body"),
        ("x", "body"),
        (None, "body"),
    ]
    for patch, field in cases:
        response = await client.patch("/api/servers/dormant", json=patch)
        error = error_of(response, 422)
        assert _field_matches(error["field"], field), (patch, error)
    assert await gateway.snapshot() == before


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/api/servers"),
        ("PUT", "/api/servers/dormant"),
        ("PATCH", "/api/servers/dormant"),
        ("POST", "/api/servers/dormant/scale"),
        ("POST", "/api/import"),
    ],
)
async def test_bodies_that_are_not_json_objects_are_refused_cleanly(
    gateway: Gateway, method: str, url: str
):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant())).status_code == 201
    before = await gateway.snapshot()
    # Scale and import may name the key they expect instead of the body.
    lacking = {"scale": "instances", "import": "servers"}.get(url.rsplit("/", 1)[1], "body")
    deep = ("[" * 5000 + "]" * 5000).encode()
    deep_object = ('{"a":' * 5000 + "1" + "}" * 5000).encode()
    json_type = {"content-type": "application/json"}
    for what, content, headers in [
        ("not JSON", b"{not json", json_type),
        ("empty", b"", json_type),
        ("truncated", b'{"slug": "x", "transport": {', json_type),
        ("invalid UTF-8", b'{"slug": "\xff\xfe"}', json_type),
        ("5000-deep array", deep, json_type),
        ("5000-deep object", deep_object, json_type),
        ("NaN literal", b'{"priority": NaN}', json_type),
        ("a form", b"slug=x", {"content-type": "application/x-www-form-urlencoded"}),
    ]:
        response = await client.request(method, url, content=content, headers=headers)
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
        error = response.json()["error"]
        assert error["message"], what
        if response.status_code == 422:
            assert error["field"] in ("body", lacking), (what, error)
    assert await gateway.snapshot() == before
    assert (await client.get("/health")).status_code == 200


async def test_a_body_over_the_cap_gets_413_and_nothing_is_written(gateway: Gateway):
    client = gateway.client
    assert gateway.manager.settings.max_body_bytes < 2 << 20
    big = dormant("big", name="x" * 100)
    big["transport"]["args"] = ["y" * 8000] * 256  # 2 MiB of valid-looking JSON
    body = json.dumps(big).encode()
    assert len(body) > 2 << 20 - 1
    response = await client.post("/api/servers", content=body)
    assert error_of(response, 413)["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 << 10):
            yield body[start : start + 64 << 10]

    for method, url in (
        ("POST", "/api/servers"),
        ("PUT", "/api/servers/big"),
        ("PATCH", "/api/servers/big"),
        ("POST", "/api/import"),
    ):
        response = await client.request(
            method, url, content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, (method, url, response.status_code, response.text)
    assert await gateway.manager.store.list_servers() == []
    assert (await client.get("/health")).status_code == 200


async def test_a_duplicate_create_is_a_conflict_and_keeps_the_first(gateway: Gateway):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant(priority=1))).status_code == 201
    before = await gateway.snapshot()
    error = error_of(await client.post("/api/servers", json=dormant(priority=2)), 409)
    assert "dormant" in error["message"]
    assert await gateway.snapshot() == before


async def test_a_slug_in_the_body_that_differs_from_the_url_is_refused(gateway: Gateway):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant())).status_code == 201
    before = await gateway.snapshot()
    error = error_of(await client.put("/api/servers/dormant", json=dormant("other")), 422)
    assert error["field"] == "slug"
    error = error_of(await client.put("/api/servers/fresh", json=dormant("other")), 422)
    assert error["field"] == "slug"
    error = error_of(await client.patch("/api/servers/dormant", json={"slug": "other"}), 422)
    assert error["field"] == "slug"
    assert await gateway.snapshot() == before


PER_SERVER_ROUTES = [
    ("GET", "", None),
    ("PATCH", "", {"priority": 1}),
    ("DELETE", "", None),
    ("POST", "/start", None),
    ("POST", "/stop", None),
    ("POST", "/restart", None),
    ("POST", "/scale", {"instances": 1}),
    ("GET", "/instances", None),
    ("GET", "/logs", None),
    ("GET", "/logs?follow=true", None),
]


async def test_an_unknown_slug_is_404_on_every_per_server_route(gateway: Gateway):
    for method, suffix, body in PER_SERVER_ROUTES:
        response = await gateway.client.request(method, f"/api/servers/nope{suffix}", json=body)
        error = error_of(response, 404)
        assert "nope" in error["message"], (method, suffix)
    assert await gateway.manager.store.list_servers() == []


async def test_a_malformed_slug_in_the_url_is_422_on_every_per_server_route(gateway: Gateway):
    for slug in ("Upper", "a" * 41, "a" * 10_000, "-leading", "a_b", "a%20b", "%C3%A9"):
        for method, suffix, body in PER_SERVER_ROUTES:
            response = await gateway.client.request(
                method, f"/api/servers/{slug}{suffix}", json=body
            )
            error = error_of(response, 422)
            assert error["field"] == "slug", (slug, method, suffix)
            assert len(response.content) < 1000
    put = await gateway.client.put("/api/servers/Upper", json=dormant("Upper"))
    assert error_of(put, 422)["field"] == "slug"
    assert await gateway.manager.store.list_servers() == []


async def test_logs_line_counts_out_of_range_are_refused(gateway: Gateway):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant())).status_code == 201
    for lines in ("-1", "100000", "x", "1.5", ""):
        for follow in ("false", "true"):
            response = await client.get(
                "/api/servers/dormant/logs", params={"lines": lines, "follow": follow}
            )
            assert error_of(response, 422)["field"] == "lines", (lines, follow)
    response = await client.get("/api/servers/dormant/logs", params={"follow": "perhaps"})
    assert error_of(response, 422)["field"] == "follow"


# --- Origin and Host ------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_and_nothing_is_written(gateway: Gateway):
    client = gateway.client
    for origin in (
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
        f"http://127.0.0.1:{gateway.port + 1}",
        f"http://evil.example:{gateway.port}",
        "file://",
    ):
        headers = {"Origin": origin}
        response = await client.post("/api/servers", json=dormant(), headers=headers)
        assert response.status_code == 403, origin
        assert (await client.get("/api/servers", headers=headers)).status_code == 403
        assert (await client.delete("/api/servers/x", headers=headers)).status_code == 403
    assert await gateway.manager.store.list_servers() == []


async def test_the_gateways_own_loopback_origin_is_allowed(gateway: Gateway):
    client = gateway.client
    for n, origin in enumerate(
        (f"http://127.0.0.1:{gateway.port}", f"http://localhost:{gateway.port}")
    ):
        response = await client.post(
            "/api/servers", json=dormant(f"ok-{n}"), headers={"Origin": origin}
        )
        assert response.status_code == 201, (origin, response.text)


async def test_two_origin_headers_are_refused_if_either_is_foreign(gateway: Gateway):
    own = f"http://127.0.0.1:{gateway.port}"
    for pair in ((own, "https://evil.example"), ("https://evil.example", own)):
        response = await gateway.client.post(
            "/api/servers",
            json=dormant(),
            headers=[("Origin", pair[0]), ("Origin", pair[1])],
        )
        assert response.status_code == 403, pair
    assert await gateway.manager.store.list_servers() == []


async def test_a_foreign_host_header_is_refused_when_bound_to_loopback(gateway: Gateway):
    client = gateway.client
    for host in (
        "evil.example",
        f"evil.example:{gateway.port}",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "0.0.0.0",
    ):
        headers = {"Host": host}
        assert (await client.get("/health", headers=headers)).status_code == 403, host
        response = await client.post("/api/servers", json=dormant(), headers=headers)
        assert response.status_code == 403, host
    for host in (
        f"127.0.0.1:{gateway.port}",
        f"localhost:{gateway.port}",
        "localhost",
        f"[::1]:{gateway.port}",
    ):
        assert (await client.get("/health", headers={"Host": host})).status_code == 200, host
    assert await gateway.manager.store.list_servers() == []


# --- hostile requests -----------------------------------------------------------------------


async def test_path_traversal_in_a_slug_is_a_clean_4xx(gateway: Gateway):
    client = gateway.client
    for path in (
        "/api/servers/..%2F..%2Fetc",
        "/api/servers/..%2F..%2Fetc/logs",
        "/api/servers/%2e%2e",
        "/api/servers/..",
        "/api/servers/%00",
        "/api/servers/a%0d%0aX-Injected:%201",
        "/api/servers/%ff%fe",
    ):
        for method in ("GET", "DELETE", "POST"):
            response = await client.request(method, path)
            assert response.status_code in (404, 405, 422), (method, path, response.status_code)
            assert "x-injected" not in response.headers
    assert (await client.get("/health")).status_code == 200


async def test_unknown_routes_and_methods_answer_in_the_error_shape(gateway: Gateway):
    client = gateway.client
    assert error_of(await client.get("/api/nothing"), 404)
    assert error_of(await client.delete("/api/servers"), 405)
    assert error_of(await client.get("/api/servers/x/scale"), 405)


async def test_deep_or_odd_values_inside_a_spec_are_refused_without_a_500(gateway: Gateway):
    client = gateway.client
    assert (await client.post("/api/servers", json=dormant())).status_code == 201
    before = await gateway.snapshot()
    deep: Any = 1
    for _ in range(900):  # under the JSON parser's depth limit, so validation meets it
        deep = {"a": deep}
    odd_values: list[Any] = [deep, [deep], "\x00", "\ud800", 10**400, -0.0, 1e308, [], {}]
    for value in odd_values:
        for key in ("priority", "tags", "auth", "transport", "timeouts", "instances", "name"):
            # json.dumps escapes the lone surrogate, which httpx's own encoder refuses.
            body = json.dumps({**dormant("odd"), key: value})
            response = await client.post("/api/servers", content=body)
            assert response.status_code in (201, 422), (key, response.status_code)
            if response.status_code == 201:
                await client.delete("/api/servers/odd")
            patched = await client.patch("/api/servers/dormant", content=json.dumps({key: value}))
            assert patched.status_code in (200, 422), (key, patched.status_code)
            if patched.status_code == 200:
                await client.put("/api/servers/dormant", json=dormant())
    env = {"transport": {"env": deep}}
    assert (await client.patch("/api/servers/dormant", json=env)).status_code == 422
    assert (await client.get("/health")).status_code == 200
    await client.put("/api/servers/dormant", json=dormant())
    assert [(s[0], s[1]) for s in await gateway.snapshot()] == [(s[0], s[1]) for s in before]
