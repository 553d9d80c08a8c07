"""SseConnection against real legacy HTTP+SSE servers: the official SDK's transport, and a
hand-written one that breaks the rules (noise, oversize and endless events, a foreign endpoint,
no endpoint at all, a stream that ends)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from roundhouse.errors import UpstreamClosed, UpstreamProtocolError, UpstreamTimeout
from roundhouse.protocol.jsonrpc import Message
from roundhouse.upstream.base import UpstreamRpcError
from roundhouse.upstream.handshake import handshake, ping
from roundhouse.upstream.sse import NotAnEventStream, SseConnection

from .sse_remote import SseRemote


@pytest.fixture(scope="module")
def sdk_remote() -> Iterator[SseRemote]:
    remote = SseRemote().start()
    yield remote
    remote.close()


@pytest.fixture
def remote_factory() -> Iterator[Any]:
    started: list[SseRemote] = []

    def start(*args: str) -> SseRemote:
        remote = SseRemote(*args).start()
        started.append(remote)
        return remote

    yield start
    for remote in started:
        remote.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0), trust_env=False
    ) as shared:
        yield shared


async def connected(url: str, client: httpx.AsyncClient, **kwargs: Any) -> SseConnection:
    conn = SseConnection(url, client=client, **kwargs)
    await conn.connect(timeout=10)
    return conn


def text_of(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def test_the_handshake_and_calls_to_an_sdk_sse_server(sdk_remote, client) -> None:
    async with await connected(sdk_remote.url, client) as conn:
        assert conn.endpoint is not None
        assert conn.endpoint.startswith(f"http://127.0.0.1:{sdk_remote.port}/messages/")
        shake = await handshake(conn, timeout=10, prefer="legacy")
        assert shake.era == "legacy"
        assert shake.server_info["name"] == "sse-fixture"
        tools = await conn.request("tools/list", {}, timeout=10)
        assert {"echo", "add", "slow", "work", "ask"} <= {t["name"] for t in tools["tools"]}
        echo = {"name": "echo", "arguments": {"text": "over sse"}}
        assert text_of(await conn.request("tools/call", echo, timeout=10)) == "over sse"
        added = {"name": "add", "arguments": {"a": 2, "b": 3}}
        assert text_of(await conn.request("tools/call", added, timeout=10)) == "5.0"
        prompt = await conn.request(
            "prompts/get", {"name": "greet", "arguments": {"name": "Ann"}}, timeout=10
        )
        assert "Ann" in prompt["messages"][0]["content"]["text"]
        read = await conn.request("resources/read", {"uri": "fixture://hello"}, timeout=10)
        assert read["contents"][0]["text"] == "hello over SSE"
        assert await ping(conn, shake, timeout=10) >= 0


async def test_a_forwarded_request_gets_its_own_id_back(sdk_remote, client) -> None:
    async with await connected(sdk_remote.url, client) as conn:
        await handshake(conn, timeout=10, prefer="legacy")
        message: Message = {"jsonrpc": "2.0", "id": "client-7", "method": "tools/list"}
        answer = await conn.send_request_raw(message, timeout=10)
        assert answer["id"] == "client-7"
        assert answer["result"]["tools"]


async def test_concurrent_calls_each_get_their_own_answer(sdk_remote, client) -> None:
    async with await connected(sdk_remote.url, client) as conn:
        await handshake(conn, timeout=10, prefer="legacy")

        async def echo(n: int) -> str:
            params = {"name": "echo", "arguments": {"text": f"n{n}"}}
            return text_of(await conn.request("tools/call", params, timeout=30))

        answers = await asyncio.gather(*(echo(n) for n in range(60)))
        assert answers == [f"n{n}" for n in range(60)]
        assert conn.pending_count == 0
        assert conn.stats.unmatched_responses == 0


async def test_progress_and_log_notifications_reach_on_message(sdk_remote, client) -> None:
    seen: list[Message] = []
    async with await connected(sdk_remote.url, client, on_message=seen.append) as conn:
        await handshake(conn, timeout=10, prefer="legacy")
        params = {"name": "work", "arguments": {"steps": 3}, "_meta": {"progressToken": "tok"}}
        result = await conn.request("tools/call", params, timeout=10)
        assert text_of(result) == "worked 3 steps"
    progress = [m["params"]["progress"] for m in seen if m["method"] == "notifications/progress"]
    logs = [m["params"]["data"] for m in seen if m["method"] == "notifications/message"]
    assert progress == [1, 2, 3]
    assert logs == [f"working on step {n}" for n in (1, 2, 3)]


async def test_a_server_to_client_request_is_answered_over_a_post(sdk_remote, client) -> None:
    asked: list[Message] = []
    conn: SseConnection

    def on_message(message: Message) -> None:
        if message.get("method") == "sampling/createMessage":
            asked.append(message)
            answer = {
                "jsonrpc": "2.0",
                "id": message["id"],
                "result": {
                    "role": "assistant",
                    "content": {"type": "text", "text": "forty-two"},
                    "model": "test",
                },
            }
            asyncio.get_running_loop().create_task(conn.send(answer))

    async with await connected(sdk_remote.url, client, on_message=on_message) as conn:
        await handshake(conn, timeout=10, prefer="legacy", capabilities={"sampling": {}})
        params = {"name": "ask", "arguments": {"prompt": "meaning?"}}
        result = await conn.request("tools/call", params, timeout=10)
    assert text_of(result) == "sampled: forty-two"
    assert asked[0]["params"]["messages"][0]["content"]["text"] == "meaning?"


async def test_a_server_request_nobody_handles_is_refused_not_left_waiting(
    sdk_remote, client
) -> None:
    async with await connected(sdk_remote.url, client) as conn:
        await handshake(conn, timeout=10, prefer="legacy", capabilities={"sampling": {}})
        params = {"name": "ask", "arguments": {"prompt": "anyone?"}}
        # The SDK passes the refusal on as the call's own error, at once.
        with pytest.raises(UpstreamRpcError, match="client does not handle this"):
            await conn.request("tools/call", params, timeout=10)


async def test_losing_the_stream_fails_every_pending_call_within_a_second(
    remote_factory, client
) -> None:
    remote = remote_factory()
    conn = await connected(remote.url, client)
    try:
        await handshake(conn, timeout=10, prefer="legacy")
        slow = {"name": "slow", "arguments": {"seconds": 60}}
        calls = [
            asyncio.ensure_future(conn.request("tools/call", slow, timeout=120)) for _ in range(8)
        ]
        while conn.pending_count < 8:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the POSTs are acknowledged: the calls wait on the stream
        killed = time.monotonic()
        remote.kill()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=5)
        took = time.monotonic() - killed
        assert all(isinstance(r, UpstreamClosed) for r in results), results
        assert took < 1.0, f"pending calls failed after {took:.2f} s"
        assert "event stream" in await asyncio.wait_for(conn.wait_closed(), 1)
        assert conn.closed
        started = time.monotonic()
        with pytest.raises(UpstreamClosed):
            await conn.request("ping", None, timeout=30)
        assert time.monotonic() - started < 1.0
    finally:
        await conn.aclose()


async def test_a_stream_the_server_ends_fails_the_call_waiting_on_it(
    remote_factory, client
) -> None:
    remote = remote_factory("--misbehave", "close-after", "--after", "2.0")
    conn = await connected(remote.url, client)
    try:
        await handshake(conn, timeout=5, prefer="legacy")
        with pytest.raises(UpstreamClosed, match="ended the event stream"):
            # ``silent`` is never answered: the stream's end is what fails the call.
            await conn.request("tools/call", {"name": "silent"}, timeout=30)
    finally:
        await conn.aclose()
    assert conn.closed


async def test_noise_on_the_stream_is_counted_and_dropped_and_calls_still_work(
    remote_factory, client
) -> None:
    seen: list[Message] = []
    remote = remote_factory("--misbehave", "noisy")
    async with await connected(remote.url, client, on_message=seen.append) as conn:
        await handshake(conn, timeout=10, prefer="legacy")
        result = await conn.request(
            "tools/call", {"name": "echo", "arguments": {"text": "clean"}}, timeout=10
        )
        assert text_of(result) == "clean"
        stats = conn.stats
        # Per answer: non-JSON, invalid UTF-8, a number, a non-object in a batch, empty data.
        assert stats.garbage_events >= 5
        assert stats.unmatched_responses >= 1  # the answer to an id never asked
        assert stats.ignored_events >= 2  # another event type, a second endpoint
        assert conn.endpoint is not None and "elsewhere" not in conn.endpoint
        assert any(m.get("params", {}).get("data") == "in a batch" for m in seen)


async def test_an_answer_over_the_event_cap_fails_only_its_own_call(remote_factory, client) -> None:
    remote = remote_factory("--misbehave", "noisy")
    async with await connected(remote.url, client, max_event_bytes=64 * 1024) as conn:
        await handshake(conn, timeout=10, prefer="legacy")
        big = {"name": "big", "arguments": {"bytes": 1 << 20}}
        with pytest.raises(UpstreamProtocolError, match="event cap"):
            await conn.request("tools/call", big, timeout=10)
        assert conn.stats.oversize_events == 1
        small = {"name": "big", "arguments": {"bytes": 1000}}
        assert len(text_of(await conn.request("tools/call", small, timeout=10))) == 1000


async def test_an_endless_event_fails_its_call_at_the_cap_and_closes_promptly(
    remote_factory, client
) -> None:
    remote = remote_factory("--misbehave", "noisy")
    conn = await connected(remote.url, client, max_event_bytes=1 << 20)
    try:
        await handshake(conn, timeout=10, prefer="legacy")
        with pytest.raises(UpstreamProtocolError, match="event cap"):
            await conn.request("tools/call", {"name": "endless"}, timeout=20)
    finally:
        started = time.monotonic()
        await conn.aclose()
        assert time.monotonic() - started < 2.0


async def test_an_endpoint_on_another_origin_is_refused(remote_factory, client) -> None:
    remote = remote_factory("--misbehave", "cross-origin")
    conn = SseConnection(remote.url, client=client)
    with pytest.raises(UpstreamProtocolError, match="another origin"):
        await conn.connect(timeout=10)
    assert conn.closed
    assert conn.endpoint is None


async def test_a_redirected_post_fails_its_call_at_once_and_is_not_followed(
    remote_factory, client
) -> None:
    remote = remote_factory("--misbehave", "redirect-post")
    async with await connected(remote.url, client) as conn:
        started = time.monotonic()
        with pytest.raises(UpstreamRpcError, match="HTTP 307"):
            await conn.request("ping", None, timeout=30)
        assert time.monotonic() - started < 5
        assert conn.pending_count == 0


async def test_a_stream_that_never_names_its_endpoint_is_bounded_by_the_timeout(
    remote_factory, client
) -> None:
    remote = remote_factory("--misbehave", "no-endpoint")
    conn = SseConnection(remote.url, client=client)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="no endpoint within 1 s"):
        await conn.connect(timeout=1)
    assert time.monotonic() - started < 5
    assert conn.closed


async def test_a_url_that_is_no_event_stream_says_so_with_its_status(
    remote_factory, client
) -> None:
    remote = remote_factory("--misbehave", "noisy")
    conn = SseConnection(f"http://127.0.0.1:{remote.port}/health", client=client)
    with pytest.raises(NotAnEventStream, match="content type") as caught:
        await conn.connect(timeout=10)
    assert caught.value.data == {"status": 200}
    missing = SseConnection(f"http://127.0.0.1:{remote.port}/nowhere", client=client)
    with pytest.raises(NotAnEventStream, match="HTTP 404"):
        await missing.connect(timeout=10)


async def test_nothing_listening_is_a_closed_connection_not_a_hang(client) -> None:
    from .sse_remote import free_port

    conn = SseConnection(f"http://127.0.0.1:{free_port()}/sse", client=client)
    with pytest.raises(UpstreamClosed):
        await conn.connect(timeout=10)
    with pytest.raises(UpstreamClosed):
        await conn.request("ping", None, timeout=10)
