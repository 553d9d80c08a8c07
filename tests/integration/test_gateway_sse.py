"""A legacy HTTP+SSE upstream behind the gateway: the official SDK client (both eras) reaches its
tools, prompts and resources; progress, logs and sampling come back; a killed server fails the
calls in flight at once and is reconnected; ``http`` finds out which transport a server speaks;
hostile SSE servers never reach ``running``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from .conftest import eventually, wait_state
from .served import Served, serve
from .sse_remote import SseRemote
from .test_remote_http import Remote

MODES = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
def sdk_remote() -> Iterator[SseRemote]:
    remote = SseRemote().start()
    yield remote
    remote.close()


def sse_spec(url: str, slug: str = "old", kind: str = "sse", **extra: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "transport": {"type": kind, "url": url},
        "timeouts": {"start": 20, "call": 30},
        "restart": {"backoff_initial": 0.2, "backoff_max": 0.5},
        **extra,
    }


@pytest.fixture
async def served(tmp_path: Path, sdk_remote: SseRemote) -> AsyncIterator[Served]:
    async with serve(tmp_path) as served:
        await served.manager.create_server(sse_spec(sdk_remote.url))
        await wait_state(served.manager, "old", "running", timeout=30)
        await served.catalogued("old")
        yield served


async def instance_view(served: Served, slug: str) -> dict[str, Any]:
    return dict((await served.manager.instances(slug))[0])


def sampler(reply: str) -> Any:
    async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=reply), model="test"
        )

    return sampling


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_client_reaches_an_sse_upstream_through_both_endpoints(served, mode):
    for url, prefix in ((served.mcp(), "old__"), (served.mcp("old"), "")):
        async with Client(url, mode=mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {f"{prefix}echo", f"{prefix}add", f"{prefix}ask"} <= names
            echoed = await client.call_tool(f"{prefix}echo", {"text": f"via {mode}"})
            assert echoed.content[0].text == f"via {mode}"
            added = await client.call_tool(f"{prefix}add", {"a": 1, "b": 2})
            assert "3" in added.content[0].text
            prompts = [p for p in (await client.list_prompts()).prompts if "greet" in p.name]
            got = await client.get_prompt(prompts[0].name, {"name": "Ann"})
            assert "Ann" in got.messages[0].content.text
            resources = (await client.list_resources()).resources
            read = await client.read_resource(resources[0].uri)
            assert read.contents[0].text == "hello over SSE"
    view = await instance_view(served, "old")
    assert view["transport"] == "sse"
    assert view["endpoint"] == served.manager.supervisor.workers("old")[0].spec.transport.url


@pytest.mark.parametrize("mode", MODES)
async def test_progress_and_log_messages_reach_the_calling_client(served, mode):
    progress: list[float] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async with Client(served.mcp("old"), mode=mode, logging_callback=on_log) as client:
        result = await client.call_tool("work", {"steps": 3}, progress_callback=on_progress)
    assert result.content[0].text == "worked 3 steps"
    assert progress == [1, 2, 3]
    assert logs == [f"working on step {n}" for n in (1, 2, 3)]


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_reaches_the_client_that_made_the_call(served, mode):
    async with (
        Client(served.mcp(), mode=mode, sampling_callback=sampler("from A")) as a,
        Client(served.mcp(), mode=mode, sampling_callback=sampler("from B")) as b,
    ):
        assert (await a.call_tool("old__ask", {"prompt": "?"})).content[0].text == (
            "sampled: from A"
        )
        assert (await b.call_tool("old__ask", {"prompt": "?"})).content[0].text == (
            "sampled: from B"
        )


async def test_killing_the_sse_server_fails_calls_in_flight_within_a_second_then_reconnects(
    tmp_path,
):
    remote = SseRemote().start()
    try:
        async with serve(tmp_path) as served:
            await served.manager.create_server(sse_spec(remote.url))
            await wait_state(served.manager, "old", "running", timeout=30)
            async with Client(served.mcp("old"), mode="legacy") as client:
                calls = [
                    asyncio.ensure_future(client.call_tool("slow", {"seconds": 60}))
                    for _ in range(10)
                ]
                connection = served.manager.supervisor.workers("old")[0].connection
                await eventually(
                    lambda: connection is not None and connection.pending_count == 10,
                    what="10 calls in flight",
                )
                await asyncio.sleep(0.2)
                killed = time.monotonic()
                remote.kill()
                results = await asyncio.wait_for(
                    asyncio.gather(*calls, return_exceptions=True), timeout=5
                )
                took = time.monotonic() - killed
            assert took < 1.0, f"the calls took {took:.2f} s to fail"
            for result in results:
                failed = isinstance(result, Exception) or result.is_error
                assert failed, result
            await wait_state(served.manager, "old", "backoff", timeout=5)
            view = await instance_view(served, "old")
            assert "connection lost" in (view["last_error"] or "")
            remote.start()
            await wait_state(served.manager, "old", "running", timeout=30)
            await served.catalogued("old")
            async with Client(served.mcp(), mode="legacy") as client:
                result = await client.call_tool("old__echo", {"text": "back"})
                assert result.content[0].text == "back"
    finally:
        remote.close()


async def test_an_http_server_that_refuses_the_post_is_found_to_speak_sse(tmp_path, sdk_remote):
    async with serve(tmp_path) as served:
        await served.manager.create_server(sse_spec(sdk_remote.url, kind="http"))
        await wait_state(served.manager, "old", "running", timeout=30)
        assert (await instance_view(served, "old"))["transport"] == "sse"
        await served.catalogued("old")
        async with Client(served.mcp("old"), mode="legacy") as client:
            assert (await client.call_tool("echo", {"text": "found"})).content[0].text == "found"


async def test_an_http_server_that_speaks_streamable_http_is_left_at_that(tmp_path):
    remote = Remote()
    remote.start()
    try:
        async with serve(tmp_path) as served:
            await served.manager.create_server(sse_spec(remote.url, slug="new", kind="http"))
            await wait_state(served.manager, "new", "running", timeout=30)
            view = await instance_view(served, "new")
            assert view["transport"] == "streamable-http"
            result = await served.manager.call(
                "new", "tools/call", {"name": "echo", "arguments": {"text": "x"}}
            )
            assert result["content"][0]["text"] == "x"
    finally:
        remote.stop()


async def test_an_http_url_that_is_neither_reports_the_refused_post(tmp_path, sdk_remote):
    health = f"http://127.0.0.1:{sdk_remote.port}/health"  # GET answers JSON, POST 405
    async with serve(tmp_path) as served:
        await served.manager.create_server(sse_spec(health, kind="http"))
        await wait_state(served.manager, "old", "backoff", timeout=30)
        view = await instance_view(served, "old")
        assert "HTTP 405" in (view["last_error"] or ""), view["last_error"]
        assert view["state"] != "running"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("cross-origin", "another origin"), ("no-endpoint", "not ready within 2s")],
)
async def test_a_hostile_sse_server_never_reaches_running(tmp_path, mode, reason):
    remote = SseRemote("--misbehave", mode).start()
    try:
        async with serve(tmp_path) as served:
            spec = sse_spec(remote.url, timeouts={"start": 2})
            await served.manager.create_server(spec)
            await wait_state(served.manager, "old", "backoff", timeout=10)
            view = await instance_view(served, "old")
            assert reason in (view["last_error"] or ""), view["last_error"]
            assert not any(name.startswith("old__") for name in served.tool_names())
    finally:
        remote.close()
