"""LineSplitter: lines across chunks, oversize lines failing alone, the last line at EOF."""

from __future__ import annotations

import pytest

from roundhouse.bindery.face.wire import OVERSIZE_HEAD_BYTES, LineSplitter
from roundhouse.protocol.jsonrpc import recover_id


class Collect:
    def __init__(self, cap: int = 64) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.splitter = LineSplitter(self.line, self.oversize, max_line_bytes=cap)

    def line(self, line: bytes) -> None:
        self.events.append(("line", bytes(line)))

    def oversize(self, head: bytes, tail: bytes) -> None:
        self.events.append(("oversize", bytes(head) + b"|" + bytes(tail)))

    def feed(self, *chunks: bytes) -> list[tuple[str, bytes]]:
        for chunk in chunks:
            self.splitter.feed(chunk)
        return self.events


def test_whole_lines_in_one_chunk_come_out_in_order():
    assert Collect().feed(b"a\nbb\n\nccc\n") == [
        ("line", b"a"),
        ("line", b"bb"),
        ("line", b""),
        ("line", b"ccc"),
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_lines_split_across_any_chunking_come_out_whole(size):
    data = b'{"id":1}\n{"id":22}\n{"id":333}\n'
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert [line for _, line in Collect().feed(*chunks)] == [
        b'{"id":1}',
        b'{"id":22}',
        b'{"id":333}',
    ]


def test_a_line_at_the_cap_passes_and_one_over_fails_alone():
    collect = Collect(cap=10)
    events = collect.feed(b"x" * 10 + b"\n" + b"y" * 11 + b"\n" + b"ok\n")
    assert events[0] == ("line", b"x" * 10)
    assert events[1][0] == "oversize"
    assert events[2] == ("line", b"ok")


def test_an_oversize_line_spread_over_many_chunks_fails_once_and_the_next_line_is_read():
    collect = Collect(cap=100)
    head = b'{"jsonrpc":"2.0","id":42,"method":"x","params":{"t":"'
    chunks = [head] + [b"z" * 50] * 20 + [b'"}}\n{"id":7}\n']
    events = collect.feed(*chunks)
    assert [kind for kind, _ in events] == ["oversize", "line"]
    assert events[1] == ("line", b'{"id":7}')
    kept_head, _, kept_tail = events[0][1].partition(b"|")
    assert recover_id(kept_head, kept_tail) == 42


def test_an_oversize_line_keeps_a_bounded_head():
    collect = Collect(cap=OVERSIZE_HEAD_BYTES)
    events = collect.feed(b"q" * (3 * OVERSIZE_HEAD_BYTES) + b"\n")
    head, _, _ = events[0][1].partition(b"|")
    assert len(head) == OVERSIZE_HEAD_BYTES


def test_the_last_line_without_a_newline_counts_at_eof():
    collect = Collect()
    collect.feed(b"first\nlast")
    collect.splitter.finish()
    assert collect.events == [("line", b"first"), ("line", b"last")]


def test_an_unfinished_oversize_line_at_eof_is_reported():
    collect = Collect(cap=5)
    collect.feed(b"0123456789")
    collect.splitter.finish()
    assert [kind for kind, _ in collect.events] == ["oversize"]
