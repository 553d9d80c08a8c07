"""StdioConnection and the handshake against real fixture server processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roundhouse.control.runtimes.process import PushReader, open_process
from roundhouse.errors import UpstreamClosed, UpstreamProtocolError, UpstreamTimeout
from roundhouse.protocol.eras import Handshake
from roundhouse.upstream.base import Connection, UpstreamRpcError
from roundhouse.upstream.handshake import handshake, ping
from roundhouse.upstream.stdio import StdioConnection

SERVERS = Path(__file__).parents[1] / "fixtures" / "servers"
MiB = 1024 * 1024
#: How ``serve`` reads the server's stdout; set for each test by ``reader``.
READER = {"kind": "pull"}


@pytest.fixture(autouse=True, params=["pull", "push"])
def reader(request: pytest.FixtureRequest) -> str:
    READER["kind"] = request.param
    return str(request.param)


@contextlib.asynccontextmanager
async def serve(
    script: str, *args: str, settle: float = 0.0, **conn_kwargs: Any
) -> AsyncIterator[tuple[asyncio.subprocess.Process, StdioConnection]]:
    """A fixture server as a real process in its own group, killed (whole group) afterwards.

    Its stdout is read as the test's ``reader`` parameter says: pulled from a plain
    StreamReader, or pushed from the pipe's callback as the process runtime does. With
    ``settle``, the connection starts reading that many seconds after the spawn.
    """
    argv = [sys.executable, str(SERVERS / script), *args]
    if READER["kind"] == "push":
        proc = await open_process(argv, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        assert isinstance(proc.stdout, PushReader)
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        await asyncio.sleep(settle)
        async with StdioConnection(proc.stdout, proc.stdin, name=script, **conn_kwargs) as conn:
            yield proc, conn
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def text_of(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def call(
    conn: Connection, shaken: Handshake, tool: str, timeout: float = 10, **args: Any
) -> str:
    params = shaken.stamp({"name": tool, "arguments": args})
    return text_of(await conn.request("tools/call", params, timeout=timeout))


async def test_a_legacy_raw_server_is_met_with_initialize() -> None:
    async with serve("raw_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=5)
    assert shaken.era == "legacy"
    assert shaken.protocol_version == "2025-11-25"
    assert shaken.server_info["name"] == "raw-fixture"
    assert shaken.capabilities == {"tools": {"listChanged": False}}
    assert shaken.instructions == "A raw fixture."


async def test_a_modern_raw_server_is_met_with_server_discover() -> None:
    async with serve("raw_server.py", "--modern") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        assert await call(conn, shaken, "echo", text="modern") == "modern"
    assert shaken.era == "modern"
    assert shaken.protocol_version == "2026-07-28"
    assert shaken.server_info == {"name": "raw-fixture", "version": "1.0.0"}


async def test_the_official_sdk_server_completes_a_handshake_and_answers_tools() -> None:
    async with serve("sdk_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=15)
        # The SDK 2.3 server answers server/discover, so it is met in the modern era.
        assert shaken.era == "modern"
        assert shaken.server_info["name"] == "sdk-fixture"
        assert await call(conn, shaken, "echo", text="hello sdk") == "hello sdk"
        assert await call(conn, shaken, "add", a=2, b=3) == "5.0"
        tools = await conn.request("tools/list", shaken.stamp({}), timeout=5)
        assert {t["name"] for t in tools["tools"]} == {"echo", "add"}
        assert await ping(conn, shaken, timeout=5) > 0


async def test_tools_call_echo_and_add_answer_over_a_stdio_connection() -> None:
    async with serve("raw_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        assert await call(conn, shaken, "echo", text="hi\nthere") == "hi\nthere"
        assert await call(conn, shaken, "add", a=2, b=40) == "42"
        assert 0 < await ping(conn, shaken, timeout=5) < 1


async def test_a_json_rpc_error_answer_raises_with_the_upstreams_own_code() -> None:
    async with serve("raw_server.py") as (_, conn):
        await handshake(conn, timeout=5)
        with pytest.raises(UpstreamRpcError) as caught:
            await conn.request("no/such/method", timeout=5)
    assert caught.value.code == -32601
    assert caught.value.method == "no/such/method"
    assert "no/such/method" in caught.value.message


async def test_many_concurrent_requests_each_get_their_own_answer() -> None:
    async with serve("raw_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        texts = [f"m{i}" for i in range(200)]
        answers = await asyncio.gather(*(call(conn, shaken, "echo", text=t) for t in texts))
        assert answers == texts
        assert conn.pending_count == 0


async def test_forwarded_requests_get_their_clients_ids_back_even_when_the_ids_collide() -> None:
    async with serve("raw_server.py") as (_, conn):
        await handshake(conn, timeout=5)
        first = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "a"}},
        }
        second = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "b"}},
        }
        third = {"jsonrpc": "2.0", "id": "s-3", "method": "nope"}
        a, b, c = await asyncio.gather(
            conn.send_request_raw(first, timeout=5),
            conn.send_request_raw(second, timeout=5),
            conn.send_request_raw(third, timeout=5),
        )
    assert (a["id"], text_of(a["result"])) == (1, "a")
    assert (b["id"], text_of(b["result"])) == (1, "b")
    assert c["id"] == "s-3"
    assert c["error"]["code"] == -32601
    assert first["id"] == 1  # the caller's message is not rewritten


async def test_garbage_lines_on_stdout_are_counted_and_dropped_without_harm() -> None:
    async with serve("misbehaving_server.py", "--garbage-stdout") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        for n in range(3):
            assert await call(conn, shaken, "echo", text=str(n)) == str(n)
        # Three non-JSON lines for each of the 6 messages it read (discover, initialize,
        # initialized, 3 calls); the blank line among them is framing slack, not garbage.
        assert conn.stats.garbage_lines == 18
        assert not conn.closed


async def test_a_17_mib_answer_fails_only_its_own_request() -> None:
    async with serve("raw_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        big = asyncio.create_task(call(conn, shaken, "blob", timeout=30, size=17 * MiB))
        small = asyncio.create_task(call(conn, shaken, "echo", timeout=30, text="still here"))
        with pytest.raises(UpstreamProtocolError, match="tools/call exceeds"):
            await big
        assert await small == "still here"
        assert conn.stats.oversize_lines == 1
        assert await call(conn, shaken, "blob", size=MiB) == "x" * MiB
        assert not conn.closed


async def test_an_answer_just_under_the_cap_passes() -> None:
    async with serve("raw_server.py", max_line_bytes=2 * MiB) as (_, conn):
        shaken = await handshake(conn, timeout=5)
        assert len(await call(conn, shaken, "blob", size=2 * MiB - 200)) == 2 * MiB - 200
        with pytest.raises(UpstreamProtocolError):
            await call(conn, shaken, "blob", size=2 * MiB)
        assert conn.stats.oversize_lines == 1


async def test_kill_9_with_20_requests_in_flight_fails_them_all_within_a_second() -> None:
    async with serve("raw_server.py") as (proc, conn):
        shaken = await handshake(conn, timeout=5)
        calls = [
            asyncio.create_task(call(conn, shaken, "sleep", timeout=60, seconds=30))
            for _ in range(20)
        ]
        await asyncio.sleep(0.2)
        assert conn.pending_count == 20
        started = time.monotonic()
        proc.kill()
        results = await asyncio.gather(*calls, return_exceptions=True)
        elapsed = time.monotonic() - started
        assert all(isinstance(r, UpstreamClosed) for r in results), results
        assert elapsed < 1.0
        assert conn.closed
        with pytest.raises(UpstreamClosed):
            await conn.request("ping", timeout=5)


async def test_a_server_that_exits_at_once_fails_the_handshake_with_upstream_closed() -> None:
    async with serve("misbehaving_server.py", "--exit-now", "4") as (proc, conn):
        with pytest.raises(UpstreamClosed):
            await handshake(conn, timeout=5)
        assert await proc.wait() == 4


async def test_a_server_that_hangs_on_initialize_times_out_naming_initialize() -> None:
    async with serve("misbehaving_server.py", "--hang-on-initialize") as (_, conn):
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="initialize"):
            await handshake(conn, timeout=0.5)
        assert time.monotonic() - started < 2


async def test_a_timed_out_request_names_its_method_and_its_late_answer_is_ignored() -> None:
    async with serve("raw_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        with pytest.raises(UpstreamTimeout, match=r"tools/call within 0\.2 s") as caught:
            await call(conn, shaken, "sleep", timeout=0.2, seconds=0.5)
        assert caught.value.data == {"method": "tools/call", "timeout": 0.2}
        assert await call(conn, shaken, "echo", text="after") == "after"
        assert conn.stats.unmatched_responses == 1


async def test_each_request_times_out_at_its_own_deadline_whatever_the_order_sent() -> None:
    # One sweep timer per connection: a short deadline sent after a long one must re-arm it.
    async with serve("raw_server.py") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        started = time.monotonic()
        slow = asyncio.create_task(call(conn, shaken, "sleep", timeout=10, seconds=1.0))
        await asyncio.sleep(0.05)
        with pytest.raises(UpstreamTimeout, match=r"within 0\.3 s"):
            # raw_server answers one request at a time: this one waits behind the sleep.
            await call(conn, shaken, "echo", timeout=0.3, text="late")
        assert time.monotonic() - started < 0.9
        assert not slow.done()
        assert await slow == "slept"
        assert await call(conn, shaken, "echo", text="again") == "again"
        assert conn.pending_count == 0


async def test_a_crash_after_some_calls_fails_the_next_call_with_upstream_closed() -> None:
    async with serve("misbehaving_server.py", "--crash-after-calls", "2") as (_, conn):
        shaken = await handshake(conn, timeout=5)
        assert await call(conn, shaken, "echo", text="1") == "1"
        assert await call(conn, shaken, "echo", text="2") == "2"
        with pytest.raises(UpstreamClosed):
            await call(conn, shaken, "echo", text="3")


async def test_aclose_closes_stdin_and_the_server_exits() -> None:
    async with serve("raw_server.py") as (proc, conn):
        await handshake(conn, timeout=5)
        await conn.aclose()
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        with pytest.raises(UpstreamClosed, match="closed by Roundhouse"):
            await conn.request("ping", timeout=1)


# -- in-memory streams: framing edge cases without a process --------------------------------------


class MemoryWriter:
    """A hand-written stand-in for a process's stdin."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._closing = False

    def write(self, data: bytes) -> None:
        self.lines.append(data)

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self._closing = True

    def is_closing(self) -> bool:
        return self._closing


async def test_notifications_and_server_requests_go_to_on_message_across_chunk_boundaries() -> None:
    reader = asyncio.StreamReader()
    received: list[dict[str, Any]] = []
    conn = StdioConnection(reader, MemoryWriter(), on_message=received.append)
    runner = asyncio.create_task(conn.run())
    payload = (
        b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}\n'
        b'{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage"}\r\n\n'
    )
    for i in range(0, len(payload), 7):
        reader.feed_data(payload[i : i + 7])
        await asyncio.sleep(0)
    reader.feed_eof()
    await runner
    assert [m["method"] for m in received] == ["notifications/message", "sampling/createMessage"]
    assert conn.stats.garbage_lines == 0
    assert conn.closed


async def test_without_on_message_a_server_ping_is_answered_and_other_requests_refused() -> None:
    reader = asyncio.StreamReader()
    writer = MemoryWriter()
    async with StdioConnection(reader, writer):
        reader.feed_data(
            b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":2,"method":"roots/list"}\n'
        )
        await asyncio.sleep(0.01)
    assert writer.lines == [
        b'{"jsonrpc":"2.0","id":1,"result":{}}\n',
        b'{"jsonrpc":"2.0","id":2,"error":{"code":-32601,'
        b'"message":"client does not handle this"}}\n',
    ]


async def test_an_oversize_line_split_over_many_chunks_fails_its_request_by_the_id_at_its_end() -> (
    None
):
    reader = asyncio.StreamReader()
    writer = MemoryWriter()
    async with StdioConnection(reader, writer, max_line_bytes=1000) as conn:
        pending = asyncio.create_task(conn.request("tools/call", {}, timeout=5))
        await asyncio.sleep(0)
        line = b'{"jsonrpc":"2.0","result":{"text":"' + b"y" * 5000 + b'"},"id":1}\n'
        for i in range(0, len(line), 300):
            reader.feed_data(line[i : i + 300])
            await asyncio.sleep(0)
        with pytest.raises(UpstreamProtocolError):
            await pending
        reader.feed_data(b'{"jsonrpc":"2.0","result":{"late":1},"id":99}\nnot json\n')
        await asyncio.sleep(0.01)
        assert (
            conn.stats.oversize_lines,
            conn.stats.unmatched_responses,
            conn.stats.garbage_lines,
        ) == (1, 1, 1)
        assert not conn.closed


async def test_cancelling_a_caller_tells_the_server_and_leaves_nothing_pending() -> None:
    reader = asyncio.StreamReader()
    writer = MemoryWriter()
    async with StdioConnection(reader, writer) as conn:
        pending = asyncio.create_task(conn.request("tools/call", {"name": "x"}, timeout=5))
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert conn.pending_count == 0
    assert b'"method":"notifications/cancelled"' in writer.lines[-1]
    assert b'"requestId":1' in writer.lines[-1]


async def test_output_written_before_the_connection_reads_reaches_it_whole() -> None:
    """Bytes the pipe delivered before the connection started reading are parsed first, even
    3 MiB of them (past the point where a StreamReader pauses the pipe)."""
    banner = ("--stdout-banner", str(3 * MiB))
    # A second for the banner to be written and wait in the reader (or the pipe).
    async with serve("misbehaving_server.py", *banner, settle=1.0) as (_, conn):
        shaken = await handshake(conn, timeout=10)
        assert await call(conn, shaken, "echo", text="after the banner") == "after the banner"
        assert conn.stats.garbage_lines == 3
