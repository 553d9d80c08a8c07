"""The request headers the Streamable HTTP frontend reads, picked out in one pass.

A dict of every header would hash each name (new bytes on every request, so no cached hash)
and then be searched by name again for each one read; here each name is matched once, by
length and then by bytes, into a slot. Headers nobody reads are passed over.

Repeats: for the headers that decide a request's fate the last copy is kept (as a dict would
keep it), the earlier copies of Origin and Host are kept too (every copy must pass the Origin
check: first-copy and last-copy readers must not disagree), and a repeated routing header of
the 2026-07-28 wire is noted (two copies are a mismatch, as in the SDK's
``find_duplicated_routing_header``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RequestHeaders", "read_headers"]


class RequestHeaders:
    __slots__ = (
        "accept",
        "content_length",
        "content_type",
        "duplicate",
        "earlier",
        "host",
        "mcp_method",
        "mcp_name",
        "origin",
        "protocol_version",
        "session_id",
    )

    def __init__(self) -> None:
        self.accept: bytes | None = None
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.host: bytes | None = None
        self.origin: bytes | None = None
        self.session_id: bytes | None = None
        self.protocol_version: bytes | None = None
        self.mcp_method: bytes | None = None
        self.mcp_name: bytes | None = None
        #: A routing header (MCP-Protocol-Version, Mcp-Method, Mcp-Name) sent twice, if any.
        self.duplicate: bytes | None = None
        #: The copies of Origin and Host before the last one, as (name, value).
        self.earlier: list[tuple[bytes, bytes]] | None = None

    def _repeat(self, name: bytes, previous: bytes | None) -> None:
        if previous is None:
            return
        if name == b"origin" or name == b"host":
            if self.earlier is None:
                self.earlier = []
            self.earlier.append((name, previous))
        else:
            self.duplicate = name


def read_headers(raw: list[Any]) -> RequestHeaders:
    """The headers of an ASGI scope (``scope["headers"]``: lower-case names) that matter here.

    A value's surrounding whitespace is not part of it (RFC 9110 5.5): h11 strips it,
    httptools does not, so it is stripped here.
    """
    headers = RequestHeaders()
    for item in raw:
        # Indexed, not unpacked: an ASGI header is any two-item sequence, and indexing costs
        # a fraction of unpacking an object of unknown type.
        name: bytes = item[0]
        value: bytes = item[1]
        if value and (value[0] in (32, 9) or value[-1] in (32, 9)):  # space, tab
            value = value.strip(b" \t")
        size = len(name)
        # By length first: most names are passed over after one integer comparison or two.
        if size == 6 and name == b"accept":
            headers.accept = value
        elif size == 4 and name == b"host":
            headers._repeat(name, headers.host)
            headers.host = value
        elif size == 12 and name == b"content-type":
            headers.content_type = value
        elif size == 14 and name == b"mcp-session-id":
            headers.session_id = value
        elif size == 14 and name == b"content-length":
            headers.content_length = value
        elif size == 20 and name == b"mcp-protocol-version":
            headers._repeat(name, headers.protocol_version)
            headers.protocol_version = value
        elif size == 6 and name == b"origin":
            headers._repeat(name, headers.origin)
            headers.origin = value
        elif size == 10 and name == b"mcp-method":
            headers._repeat(name, headers.mcp_method)
            headers.mcp_method = value
        elif size == 8 and name == b"mcp-name":
            headers._repeat(name, headers.mcp_name)
            headers.mcp_name = value
    return headers
