"""A response cache for reads: entries live ``ttl`` seconds, at most ``max_entries`` of them
(least recently used goes first), and any mutation empties it.

Invalidating everything on a write is coarse on purpose: the cache cannot know which reads a
write changes (a new task changes every list, the stats, the ready set), and a wrong answer
costs more than a miss.

A read that raced a write must not put the old world back. A read remembers ``generation``
before it asks the backend and stores its answer with ``put_if_current``; every invalidation
moves the generation on, so an answer read before or during a write is dropped.

Keys are ``orjson`` bytes of ``[operation, arguments]`` with sorted keys, so equal argument dicts
give equal keys whatever their order. Arguments that are not plain JSON (non-string keys, sets,
objects) are refused with ``InvalidInput`` rather than guessed at: ``{1: x}`` and ``{"1": x}``
must not share an entry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from roundhouse.errors import InvalidInput

__all__ = ["ResponseCache"]

_KEY_OPTIONS: Final = orjson.OPT_SORT_KEYS


class ResponseCache:
    """TTL + bounded LRU, keyed by (operation, arguments); any mutation invalidates everything.
    ``None`` is never stored: ``get`` answers ``None`` for a miss."""

    __slots__ = (
        "_clock",
        "_entries",
        "_generation",
        "evictions",
        "hits",
        "invalidations",
        "max_entries",
        "misses",
        "ttl",
    )

    def __init__(
        self,
        ttl: float = 300.0,
        max_entries: int = 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl != ttl:  # NaN would make every entry immortal
            raise ValueError("ttl must be a number of seconds, not NaN")
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, not {max_entries}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self._generation = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0

    @staticmethod
    def key(operation: str, arguments: Mapping[str, Any]) -> bytes:
        if type(arguments) is not dict:
            arguments = dict(arguments)
        try:
            return orjson.dumps([operation, arguments], option=_KEY_OPTIONS)
        except TypeError as exc:  # orjson.JSONEncodeError
            raise InvalidInput(
                f"{operation}: the arguments cannot be used as a cache key ({exc})",
                field="arguments",
            ) from exc

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, operation: str, arguments: Mapping[str, Any]) -> Any | None:
        return self._get(self.key(operation, arguments))

    def put(self, operation: str, arguments: Mapping[str, Any], value: Any) -> None:
        self._put(self.key(operation, arguments), value)

    def put_if_current(
        self, generation: int, operation: str, arguments: Mapping[str, Any], value: Any
    ) -> None:
        """``put``, unless an invalidation happened since ``generation`` was read."""
        if generation == self._generation:
            self.put(operation, arguments, value)

    def _get(self, key: bytes) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def _put(self, key: bytes, value: Any) -> None:
        if self.ttl <= 0 or self.max_entries == 0 or value is None:
            return
        entries = self._entries
        entries[key] = (self._clock() + self.ttl, value)
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evictions += 1

    def invalidate_all(self) -> None:
        self._entries.clear()
        self._generation += 1
        self.invalidations += 1

    def __len__(self) -> int:
        """Entries held, expired ones not yet looked at included."""
        return len(self._entries)

    def snapshot(self) -> dict[str, Any]:
        return {
            "entries": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "invalidations": self.invalidations,
            "ttl": self.ttl,
            "max_entries": self.max_entries,
        }
