"""The pooled HTTP client against a real HTTP/1.1 server on 127.0.0.1.

The server is a small ``asyncio.start_server`` HTTP/1.1 responder written here, not a framework:
it counts connections as the kernel sees them (opened, open now, most open at once) and can
misbehave on purpose (garbage, early close, 50 MB streams, a gzip body, a stall).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from roundhouse.errors import InvalidInput, UpstreamClosed, UpstreamProtocolError
from roundhouse.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Guard,
    Limits,
    RetryPolicy,
    Timeouts,
)
from roundhouse.upstream.pooled import (
    BackendTimeout,
    BackendUnavailable,
    PooledHttpClient,
    RequestTooLarge,
    ResponseTooLarge,
)

BIG = 50 << 20
CHUNK = b"x" * (64 << 10)


class Server:
    """An HTTP/1.1 server with keep-alive that keeps count of its connections."""

    def __init__(self) -> None:
        self.opened = 0
        self.open = 0
        self.max_open = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.gate = asyncio.Event()
        self.big_sent = 0
        self.drop_armed = False
        self.dropped = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                if self.drop_armed:
                    # A kept-alive connection closed just as a request came in on it.
                    self.drop_armed = False
                    self.dropped += 1
                    break
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (h.split(":", 1) for h in lines if h)
                }
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                self.requests.append((method, target, headers, body))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep_alive = await self._route(method, target, body, writer)
                finally:
                    self.in_flight -= 1
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def _route(
        self, method: str, target: str, body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        path = target.split("?", 1)[0]
        if path == "/ok":
            return await respond(writer, {"ok": True, "target": target})
        if path == "/arm-drop":
            self.drop_armed = True
            return await respond(writer, {"armed": True})
        if path == "/ok-close":
            # Says close but keeps the connection open: the client must not reuse it anyway.
            return await respond(writer, {"ok": True}, extra=b"Connection: close\r\n")
        if path == "/moved":
            return await respond(writer, {}, status=b"302 Found", extra=b"Location: /ok\r\n")
        if path == "/chunked":
            frames = [b'{"parts": ', b"[1, 2]}"]
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for frame in frames:
                writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if path == "/until-close":
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}')
            await writer.drain()
            return False
        if path == "/echo":
            return await respond(writer, {"method": method, "body": orjson.loads(body or b"null")})
        if path == "/hold":
            await self.gate.wait()
            return await respond(writer, {"held": True})
        if path == "/slow":
            await asyncio.sleep(30)
            return await respond(writer, {"late": True})
        if path == "/text":
            return await respond(writer, b"<html>not json</html>", content_type="text/html")
        if path == "/big":
            declared = "declared" in target
            await self._stream_big(writer, declared)
            return False
        if path == "/gzip":
            packed = gzip.compress(b'{"a": 1}')
            return await respond(writer, packed, extra=b"Content-Encoding: gzip\r\n")
        if path == "/garbage":
            writer.write(b"HELLO GARBAGE\r\n\r\n")
            await writer.drain()
            return False
        if path == "/close":
            return False
        if path == "/short":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            await writer.drain()
            return False
        if path == "/bad-length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}")
            await writer.drain()
            return False
        if path == "/huge-header":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
            await writer.drain()
            return False
        return await respond(writer, {"error": "not found"}, status=b"404 Not Found")

    async def _stream_big(self, writer: asyncio.StreamWriter, declared: bool) -> None:
        if declared:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        frame = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
        try:
            while self.big_sent < BIG:
                writer.write(CHUNK if declared else frame)
                await writer.drain()
                self.big_sent += len(CHUNK)
            if not declared:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except ConnectionError:
            pass


async def respond(
    writer: asyncio.StreamWriter,
    payload: Any,
    *,
    status: bytes = b"200 OK",
    content_type: str = "application/json",
    extra: bytes = b"",
) -> bool:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    writer.write(
        b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
        % (status, content_type.encode(), len(body), extra)
        + body
    )
    await writer.drain()
    return True


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    server = Server()
    await server.start()
    yield server
    server.gate.set()
    await server.stop()


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- ordinary exchanges ---------------------------------------------------------------------------


async def test_a_json_body_goes_out_with_orjson_and_the_answer_comes_back(server: Server) -> None:
    async with PooledHttpClient(server.url, headers={"x-client": "test"}) as client:
        response = await client.request("POST", "/echo", json={"title": "é", "tags": ["a"]})
    assert response.status == 200
    assert response.json() == {"method": "POST", "body": {"title": "é", "tags": ["a"]}}
    assert response.headers["content-type"] == "application/json"
    _, _, headers, body = server.requests[0]
    assert body == orjson.dumps({"title": "é", "tags": ["a"]})
    assert headers["content-type"] == "application/json"
    assert headers["x-client"] == "test"
    assert headers["accept-encoding"] == "identity"


async def test_params_are_encoded_into_the_query(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        response = await client.request("GET", "/ok", params={"q": "a b&c", "limit": 5})
    assert response.json()["target"] == "/ok?q=a+b%26c&limit=5"


async def test_an_error_status_is_an_answer_not_an_exception(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        response = await client.request("GET", "/nowhere")
    assert response.status == 404
    assert response.json() == {"error": "not found"}


# --- the pool -------------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_kept_alive_connection(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        for _ in range(200):
            assert (await client.request("GET", "/ok")).status == 200
    assert len(server.requests) == 200
    assert server.opened == 1


async def test_fifty_concurrent_requests_never_hold_more_than_ten_connections(
    server: Server,
) -> None:
    async with PooledHttpClient(server.url, timeouts=Timeouts(pool=30.0)) as client:
        calls = [asyncio.create_task(client.request("GET", "/hold")) for _ in range(50)]
        await wait_for(lambda: server.in_flight == 10)
        await asyncio.sleep(0.2)  # room for an eleventh, were the pool to allow one
        assert server.open == 10
        assert server.in_flight == 10
        server.gate.set()
        answers = await asyncio.gather(*calls)
        assert all(answer.status == 200 for answer in answers)
        assert server.max_open == 10
        assert server.max_in_flight == 10
        # Once the answers are read, at most max_keepalive (5) idle connections stay open...
        await wait_for(lambda: server.open <= 5)
        kept = server.open
        assert 1 <= kept <= 5
        opened = server.opened
        # ...and they are what later requests use.
        for _ in range(20):
            await client.request("GET", "/ok")
        assert server.opened == opened
    await wait_for(lambda: server.open == 0)


async def test_a_caller_that_waits_too_long_for_a_free_connection_gets_a_pool_timeout(
    server: Server,
) -> None:
    limits = Limits(max_connections=1, max_keepalive=1)
    async with PooledHttpClient(server.url, limits=limits, timeouts=Timeouts(pool=0.2)) as client:
        holder = asyncio.create_task(client.request("GET", "/hold"))
        await wait_for(lambda: server.in_flight == 1)
        with pytest.raises(BackendTimeout) as caught:
            await client.request("GET", "/ok")
        assert caught.value.phase == "pool"
        assert "no free connection" in caught.value.message
        server.gate.set()
        assert (await holder).status == 200
    assert server.opened == 1


async def test_a_kept_alive_connection_dropped_under_a_get_is_retried_once_on_a_fresh_one(
    server: Server,
) -> None:
    async with PooledHttpClient(server.url) as client:
        await client.request("GET", "/arm-drop")
        response = await client.request("GET", "/ok")
    assert response.status == 200
    assert server.dropped == 1
    assert server.opened == 2


async def test_a_post_on_a_dropped_kept_alive_connection_is_not_sent_again(
    server: Server,
) -> None:
    async with PooledHttpClient(server.url) as client:
        await client.request("GET", "/arm-drop")
        with pytest.raises(BackendUnavailable, match="closed the connection without answering"):
            await client.request("POST", "/echo", json={"a": 1})
        assert (await client.request("GET", "/ok")).status == 200
    assert server.dropped == 1
    assert [request for request in server.requests if request[0] == "POST"] == []


async def test_connection_close_from_the_server_is_honoured(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        for _ in range(3):
            assert (await client.request("GET", "/ok-close")).status == 200
        await wait_for(lambda: server.open == 0)
    assert server.opened == 3


async def test_chunked_and_read_until_close_bodies_are_read_whole(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        assert (await client.request("GET", "/chunked")).json() == {"parts": [1, 2]}
        assert (await client.request("GET", "/chunked")).json() == {"parts": [1, 2]}
        assert server.opened == 1
        assert (await client.request("GET", "/until-close")).json() == {"a": 1}


async def test_a_redirect_is_an_answer_and_is_not_followed(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        response = await client.request("GET", "/moved")
    assert response.status == 302
    assert response.headers["location"] == "/ok"
    assert len(server.requests) == 1


async def test_a_head_answer_ends_with_its_head(server: Server) -> None:
    async with PooledHttpClient(server.url, timeouts=Timeouts(read=5.0)) as client:
        response = await client.request("HEAD", "/ok")
        assert response.status == 200
        assert response.body == b""
        assert (await client.request("GET", "/ok")).status == 200


# --- size caps ------------------------------------------------------------------------------------


async def test_a_request_over_the_cap_is_refused_before_anything_is_sent(server: Server) -> None:
    limits = Limits(max_request_bytes=1000)
    async with PooledHttpClient(server.url, limits=limits) as client:
        with pytest.raises(RequestTooLarge) as caught:
            await client.request("POST", "/echo", json={"body": "x" * 1000})
        assert caught.value.http_status == 413
        assert caught.value.counts_as_failure is False
        with pytest.raises(RequestTooLarge):
            await client.request("GET", "/ok", params={"q": "y" * 2000})
        assert (await client.request("POST", "/echo", json={"body": "x" * 900})).status == 200
    assert server.opened == 1
    assert len(server.requests) == 1


async def test_a_streamed_answer_over_the_cap_is_cut_off_without_being_read_whole(
    server: Server,
) -> None:
    limits = Limits(max_response_bytes=1 << 20)
    async with PooledHttpClient(server.url, limits=limits) as client:
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge) as caught:
                await client.request("GET", "/big")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "cut off" in caught.value.message
        assert caught.value.counts_as_failure is False
        # The connection was closed, not left half-read in the pool.
        await wait_for(lambda: server.open == 0)
        assert (await client.request("GET", "/ok")).status == 200
    assert peak < 8 << 20, f"the client held {peak} bytes at its peak"
    assert server.big_sent < BIG // 2, f"the server got {server.big_sent} bytes out"


async def test_an_answer_that_declares_a_length_over_the_cap_is_refused_at_once(
    server: Server,
) -> None:
    limits = Limits(max_response_bytes=1 << 20)
    async with PooledHttpClient(server.url, limits=limits) as client:
        with pytest.raises(ResponseTooLarge, match=f"declares {BIG} bytes"):
            await client.request("GET", "/big?declared=1")
    assert server.big_sent < BIG // 2


# --- a backend that is down, slow or hostile -----------------------------------------------------


async def test_a_refused_connection_is_backend_unavailable() -> None:
    async with PooledHttpClient(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(BackendUnavailable) as caught:
            await client.request("GET", "/ok")
    assert caught.value.counts_as_failure is True
    assert caught.value.http_status == 503
    assert "GET /ok to http://127.0.0.1:" in caught.value.message


async def test_a_slow_server_is_a_read_timeout_within_its_bound(server: Server) -> None:
    timeouts = Timeouts(connect=5.0, read=0.3, write=5.0, pool=5.0)
    async with PooledHttpClient(server.url, timeouts=timeouts) as client:
        started = time.monotonic()
        with pytest.raises(BackendTimeout) as caught:
            await client.request("GET", "/slow")
        elapsed = time.monotonic() - started
    assert caught.value.phase == "read"
    assert caught.value.timeout == 0.3
    assert caught.value.counts_as_failure is True
    assert "read timeout 0.3 s" in caught.value.message
    assert 0.25 < elapsed < 5.0


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/garbage", "RemoteProtocolError"),
        ("/close", "RemoteProtocolError"),
        ("/short", "RemoteProtocolError"),
        ("/bad-length", "RemoteProtocolError"),
        ("/huge-header", "RemoteProtocolError"),
    ],
)
async def test_a_broken_answer_is_backend_unavailable_with_a_short_reason(
    server: Server, path: str, fragment: str
) -> None:
    async with PooledHttpClient(server.url) as client:
        with pytest.raises(BackendUnavailable) as caught:
            await client.request("GET", path)
        assert fragment in caught.value.message
        assert len(caught.value.message) < 400
        # The pool is not poisoned: the next request goes through.
        assert (await client.request("GET", "/ok")).status == 200


async def test_a_body_that_is_not_json_says_so_clearly(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        response = await client.request("GET", "/text")
    assert response.body == b"<html>not json</html>"
    with pytest.raises(UpstreamProtocolError, match=r"HTTP 200, text/html, 21 bytes\) is not JSON"):
        response.json()


async def test_a_compressed_answer_is_refused(server: Server) -> None:
    async with PooledHttpClient(server.url) as client:
        with pytest.raises(UpstreamProtocolError, match="'gzip'-encoded"):
            await client.request("GET", "/gzip")


# --- bad input from our own callers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "match"),
    [
        ("FETCH", "/ok", {}, "not an HTTP method"),
        ("GET\r\nX: y", "/ok", {}, "not an HTTP method"),
        ("GET", "http://elsewhere.example/ok", {}, "must start with '/'"),
        ("GET", "ok", {}, "must start with '/'"),
        ("GET", "/ok\r\nX-Injected: 1", {}, "non-printable"),
        ("POST", "/echo", {"json": {"tags": {"a"}}}, "the body is not JSON"),
        ("POST", "/echo", {"json": {1: "int key"}}, "the body is not JSON"),
        ("GET", "/ok", {"params": {"q": object()}}, "must be a string, number"),
        ("GET", "/ok", {"params": {"q": [1, {"a": 1}]}}, "not list"),
        ("GET", "/ok", {"params": {3: "x"}}, "query parameter '3'"),
    ],
)
async def test_hostile_or_malformed_requests_are_refused_and_nothing_is_sent(
    server: Server, method: str, path: str, kwargs: dict[str, Any], match: str
) -> None:
    async with PooledHttpClient(server.url) as client:
        with pytest.raises(InvalidInput, match=match):
            await client.request(method, path, **kwargs)
    assert server.opened == 0


@pytest.mark.parametrize(
    "base_url",
    ["ftp://127.0.0.1/", "127.0.0.1:80", "http://", "http://[::1", "http://127.0.0.1:99999"],
)
def test_a_base_url_that_cannot_be_used_is_refused(base_url: str) -> None:
    with pytest.raises(InvalidInput):
        PooledHttpClient(base_url)


def test_an_https_backend_is_refused_clearly_when_the_client_is_made() -> None:
    with pytest.raises(InvalidInput, match="must be http://"):
        PooledHttpClient("https://127.0.0.1:8443")


@pytest.mark.parametrize("headers", [{"x-a": "1\r\nX-Injected: 1"}, {"bad name": "1"}])
def test_extra_headers_that_would_break_the_request_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="not a usable header"):
        PooledHttpClient("http://127.0.0.1:1", headers=headers)


async def test_errors_never_show_credentials_from_the_base_url() -> None:
    url = f"http://user:s3cret@127.0.0.1:{closed_port()}"
    async with PooledHttpClient(url) as client:
        with pytest.raises(BackendUnavailable) as caught:
            await client.request("GET", "/ok")
    assert "s3cret" not in caught.value.message
    assert "user" not in caught.value.message


async def test_a_closed_client_refuses_clearly(server: Server) -> None:
    client = PooledHttpClient(server.url)
    await client.aclose()
    await client.aclose()
    with pytest.raises(UpstreamClosed, match="closed by Roundhouse"):
        await client.request("GET", "/ok")


# --- with a Guard in front ------------------------------------------------------------------------


async def test_a_guard_opens_the_circuit_on_a_dead_backend_and_stops_connecting() -> None:
    breaker = CircuitBreaker("bindery", BreakerConfig(failure_threshold=5, recovery_timeout=60.0))
    guard = Guard(breaker, policy=RetryPolicy(attempts=1))
    async with PooledHttpClient(f"http://127.0.0.1:{closed_port()}") as client:
        for _ in range(5):
            with pytest.raises(BackendUnavailable):
                await guard.run(
                    "get_stats",
                    {},
                    lambda: client.request("GET", "/api/stats"),
                    idempotent=True,
                    mutation=False,
                )
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            await guard.run(
                "get_stats",
                {},
                lambda: client.request("GET", "/api/stats"),
                idempotent=True,
                mutation=False,
            )
