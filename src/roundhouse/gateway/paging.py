"""Paging the merged lists, and merging the cache hints of the 2026-07-28 era.

A cursor is opaque to clients: base64url (unpadded) of ``{"v": version, "o": offset}``. It is
only good for the catalog version it was issued for: when the list changed between two pages,
carrying on from the old offset would skip or repeat entries, and quietly starting again from the
top would hand the client duplicates it cannot recognise. Both are worse than an error the client
can act on (list again from the start), so every bad cursor is ``InvalidInput("invalid cursor")``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Final, TypeVar

import orjson

from roundhouse.errors import InvalidInput

__all__ = ["MAX_CURSOR_LENGTH", "decode_cursor", "encode_cursor", "merge_cache_hints", "page"]

T = TypeVar("T")

#: Longer than any cursor we issue (two 64-bit ints in JSON, base64url): anything longer is
#: rejected before it is decoded.
MAX_CURSOR_LENGTH: Final = 128
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")


def encode_cursor(version: int, offset: int) -> str:
    raw = orjson.dumps({"v": version, "o": offset})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: object, version: int) -> int:
    """The offset a cursor stands for, if it was issued for ``version``; else ``InvalidInput``."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid("not a cursor this gateway issued")
    if not _BASE64URL.fullmatch(cursor):
        raise _invalid("not a cursor this gateway issued")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:  # binascii.Error and orjson.JSONDecodeError are both ValueErrors
        raise _invalid("not a cursor this gateway issued") from None
    if not isinstance(data, dict) or data.keys() != {"v", "o"}:
        raise _invalid("not a cursor this gateway issued")
    cursor_version, offset = data["v"], data["o"]
    if type(cursor_version) is not int or type(offset) is not int:
        raise _invalid("not a cursor this gateway issued")
    if cursor_version != version:
        raise _invalid("the list changed since this cursor was issued; list again from the start")
    return offset


def page(
    items: Sequence[T], cursor: str | None, page_size: int, version: int
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the cursor of the next one (None on the last page)."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    offset = 0
    if cursor is not None:
        offset = decode_cursor(cursor, version)
        # We never issue offset 0 (the first page has no cursor) nor one at or past the end.
        if not 0 < offset < len(items):
            raise _invalid("the cursor points outside the list")
    end = offset + page_size
    next_cursor = encode_cursor(version, end) if end < len(items) else None
    return list(items[offset:end]), next_cursor


def merge_cache_hints(hints: list[tuple[int | None, str | None]]) -> tuple[int, str]:
    """``(ttlMs, cacheScope)`` of a merged list from the hints of its parts.

    The shortest ttl given wins (0, "do not cache", when none is given); the list is private
    when any part is private. A scope that is neither ``public`` nor ``private`` counts as
    private: a cache that guesses wrong the other way leaks one principal's list to another.
    """
    ttls = [max(ttl, 0) for ttl, _ in hints if ttl is not None]
    scopes = {scope for _, scope in hints if scope is not None}
    private = any(scope != "public" for scope in scopes)
    return (min(ttls) if ttls else 0, "private" if private else "public")


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput("invalid cursor", field="cursor", data={"reason": reason})
