"""The text/event-stream decoder and the endpoint rule of the HTTP+SSE transport: pure, no I/O."""

from __future__ import annotations

import random

import pytest

from roundhouse.protocol.jsonrpc import recover_id
from roundhouse.protocol.sse import OversizeEvent, SseDecoder, SseEvent
from roundhouse.upstream.sse import resolve_endpoint

CAP = 1024


def decode(*chunks: bytes, cap: int = CAP) -> list[SseEvent | OversizeEvent]:
    decoder = SseDecoder(cap)
    out: list[SseEvent | OversizeEvent] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def test_events_are_split_on_blank_lines_and_named_by_their_event_field() -> None:
    events = decode(b"event: endpoint\ndata: /messages?s=1\n\ndata: {}\n\n")
    assert events == [SseEvent("endpoint", b"/messages?s=1"), SseEvent("message", b"{}")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_of_the_format_is_understood(newline: bytes) -> None:
    stream = newline.join([b"data: a", b"data: b", b"", b"event: x", b"data: c", b"", b""])
    assert decode(stream) == [SseEvent("message", b"a\nb"), SseEvent("x", b"c")]


def test_a_crlf_split_between_two_chunks_is_one_line_break() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\n") == [SseEvent("message", b"a")]


def test_any_split_of_a_stream_into_chunks_gives_the_same_events() -> None:
    stream = (
        b"\xef\xbb\xbf: hello\r\nevent: endpoint\r\ndata: /m\r\n\r\n"
        b'id: 7\ndata:{"a":1}\ndata:  two spaces\n\nretry: 10\nunknown: x\ndata\n\n'
    )
    whole = decode(stream)
    assert whole == [
        SseEvent("endpoint", b"/m"),
        SseEvent("message", b'{"a":1}\n two spaces', "7"),
        SseEvent("message", b"", "7"),
    ]
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode(*pieces) == whole, cuts


def test_comments_and_events_without_data_dispatch_nothing() -> None:
    assert decode(b": keep-alive\n\nevent: ping\n\n: another\n\n") == []


def test_an_unfinished_event_at_the_end_of_the_stream_is_not_dispatched() -> None:
    assert decode(b"data: complete\n\ndata: cut short\n") == [SseEvent("message", b"complete")]


def test_an_event_over_the_cap_is_reported_at_once_with_its_id_and_the_rest_dropped() -> None:
    answer = b'{"jsonrpc": "2.0", "id": 41, "result": {"text": "' + b"x" * 5000 + b'"}}'
    decoder = SseDecoder(CAP)
    first = decoder.feed(b"event: message\ndata: " + answer[:2000])
    assert len(first) == 1 and isinstance(first[0], OversizeEvent)
    assert recover_id(first[0].head) == 41
    # The rest of the oversize event is dropped; the next event comes through whole.
    assert decoder.feed(answer[2000:] + b"\ndata: more of it\n\n") == []
    assert decoder.feed(b"data: next\n\n") == [SseEvent("message", b"next")]


def test_an_endless_line_without_a_newline_never_holds_more_than_the_cap() -> None:
    decoder = SseDecoder(CAP)
    events = decoder.feed(b"data: ")
    for _ in range(2000):
        events += decoder.feed(b"y" * 700)
        assert decoder.buffered <= CAP
    assert len(events) == 1 and isinstance(events[0], OversizeEvent)
    assert decoder.feed(b"\n\ndata: after\n\n") == [SseEvent("message", b"after")]


def test_many_data_lines_are_capped_together_not_one_by_one() -> None:
    events = decode(b"data: " + b"z" * 600 + b"\ndata: " + b"z" * 600 + b"\n\n")
    assert len(events) == 1 and isinstance(events[0], OversizeEvent)


def test_an_event_exactly_at_the_cap_is_dispatched() -> None:
    data = b"q" * (CAP - 6)  # the line "data: " + data is CAP bytes
    assert decode(b"data: " + data + b"\n\n") == [SseEvent("message", data)]


# --- the endpoint event ---------------------------------------------------------------------------

SSE = "http://127.0.0.1:8000/sse"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/messages/?session_id=abc", "http://127.0.0.1:8000/messages/?session_id=abc"),
        ("messages?s=1", "http://127.0.0.1:8000/messages?s=1"),
        ("http://127.0.0.1:8000/m", "http://127.0.0.1:8000/m"),
        ("  /padded  ", "http://127.0.0.1:8000/padded"),
    ],
)
def test_an_endpoint_is_resolved_against_the_sse_url(value: str, expected: str) -> None:
    assert resolve_endpoint(SSE, value) == expected


def test_a_default_port_written_or_not_is_the_same_origin() -> None:
    assert resolve_endpoint("https://h.example/sse", "https://h.example:443/m") == (
        "https://h.example/m"
    )


@pytest.mark.parametrize(
    "value",
    [
        "http://localhost:8000/messages",  # another host name, even for the same machine
        "//evil.example/messages",
        "http://127.0.0.1:8001/messages",
        "https://127.0.0.1:8000/messages",
        "http://evil.example/messages",
    ],
)
def test_an_endpoint_on_another_origin_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="another origin"):
        resolve_endpoint(SSE, value)


@pytest.mark.parametrize("value", ["", "   ", "/a b", "/a\nb", "/a\x00", "/" + "a" * 5000])
def test_an_endpoint_that_is_not_a_url_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="does not hold a URL"):
        resolve_endpoint(SSE, value)
