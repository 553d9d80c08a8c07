"""read_headers: the one pass over an ASGI scope's headers that the HTTP frontend reads."""

from __future__ import annotations

import pytest

from roundhouse.gateway.frontends.headers import read_headers

WRK = [
    (b"host", b"127.0.0.1:8080"),
    (b"content-type", b"application/json"),
    (b"accept", b"application/json, text/event-stream"),
    (b"mcp-protocol-version", b"2025-11-25"),
    (b"mcp-session-id", b"abc"),
    (b"content-length", b"123"),
]


def test_each_header_read_lands_in_its_slot() -> None:
    headers = read_headers(
        [
            *WRK,
            (b"origin", b"http://127.0.0.1:8080"),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", b"echo"),
        ]
    )
    assert headers.host == b"127.0.0.1:8080"
    assert headers.content_type == b"application/json"
    assert headers.accept == b"application/json, text/event-stream"
    assert headers.protocol_version == b"2025-11-25"
    assert headers.session_id == b"abc"
    assert headers.content_length == b"123"
    assert headers.origin == b"http://127.0.0.1:8080"
    assert headers.mcp_method == b"tools/call"
    assert headers.mcp_name == b"echo"
    assert headers.duplicate is None
    assert headers.earlier is None


def test_absent_headers_are_none_and_others_are_passed_over() -> None:
    headers = read_headers(
        [(b"user-agent", b"x"), (b"x-accept", b"*/*"), (b"hosts", b"h"), (b"mcp-names", b"n")]
    )
    for slot in (
        "accept",
        "content_length",
        "content_type",
        "host",
        "origin",
        "session_id",
        "protocol_version",
        "mcp_method",
        "mcp_name",
        "duplicate",
        "earlier",
    ):
        assert getattr(headers, slot) is None, slot


@pytest.mark.parametrize(
    ("raw", "stripped"),
    [
        (b"  abc", b"abc"),
        (b"abc\t", b"abc"),
        (b" \t abc \t ", b"abc"),
        (b"a b", b"a b"),
        (b"", b""),
        (b"   ", b""),
    ],
)
def test_surrounding_space_and_tab_are_not_part_of_a_value(raw: bytes, stripped: bytes) -> None:
    assert read_headers([(b"mcp-session-id", raw)]).session_id == stripped


def test_the_last_copy_wins_and_earlier_origins_and_hosts_are_kept() -> None:
    headers = read_headers(
        [
            (b"origin", b"http://a"),
            (b"host", b"h1"),
            (b"origin", b"http://b"),
            (b"origin", b"http://c"),
            (b"host", b"h2"),
            (b"accept", b"one"),
            (b"accept", b"two"),
        ]
    )
    assert headers.origin == b"http://c"
    assert headers.host == b"h2"
    assert headers.accept == b"two"
    assert sorted(headers.earlier or []) == [
        (b"host", b"h1"),
        (b"origin", b"http://a"),
        (b"origin", b"http://b"),
    ]
    assert headers.duplicate is None  # Accept is not a routing header


@pytest.mark.parametrize("name", [b"mcp-protocol-version", b"mcp-method", b"mcp-name"])
def test_a_repeated_routing_header_is_noted(name: bytes) -> None:
    headers = read_headers([(name, b"one"), (b"host", b"h"), (name, b"one")])
    assert headers.duplicate == name
    assert headers.earlier is None


def test_any_two_item_sequence_is_a_header() -> None:
    # ASGI allows lists as well as tuples.
    headers = read_headers([[b"host", b"h"], (b"accept", b"*/*")])
    assert (headers.host, headers.accept) == (b"h", b"*/*")


@pytest.mark.parametrize(
    "hostile",
    [
        [(b"host",)],  # one item
        [(None, b"x")],  # a name that is not bytes
        [b"host"],  # not a pair at all
    ],
)
def test_a_malformed_header_list_raises_instead_of_being_half_read(hostile: list[object]) -> None:
    with pytest.raises((TypeError, IndexError)):
        read_headers(hostile)
