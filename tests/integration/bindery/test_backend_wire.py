"""One send per answer: the backend's transport holds a write until the next one or the end of
the loop's turn, so a head and its body leave together and nothing waits longer than a turn."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from roundhouse.bindery.backend import running
from roundhouse.bindery.backend.wire import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Records what reaches the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_a_head_and_its_body_written_in_one_turn_leave_in_one_write() -> None:
    wire = RecordingTransport()
    transport = CoalescingTransport(wire, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert wire.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)
    assert len(wire.writes) == 1


async def test_a_lone_write_leaves_at_the_end_of_the_turn_and_before_a_close() -> None:
    wire = RecordingTransport()
    transport = CoalescingTransport(wire, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert wire.writes == []
    await asyncio.sleep(0)
    assert wire.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(b"last")
    transport.close()
    assert wire.writes[-1] == b"last" and wire.closed


async def test_a_client_waiting_for_100_continue_gets_it_then_its_answer(tmp_path: Path) -> None:
    async with running(str(tmp_path / "bindery.db")) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"title": "sent after 100 Continue"}'
        writer.write(
            b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 201")
        writer.close()
        await writer.wait_closed()
