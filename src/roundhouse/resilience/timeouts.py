"""Timeouts and connection limits as value objects, not loose floats.

Each wait has its own bound and its own name, so an error can say which one ran out: ``connect``
(the TCP handshake), ``write`` (sending the request), ``read`` (between two chunks of the
answer) and ``pool`` (waiting for a free connection when all are busy). ``Limits`` caps how many
connections a client holds and how many bytes go each way. Both are plain data: the HTTP client
in ``upstream/pooled.py`` applies them to its own pool and deadlines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["Limits", "Timeouts"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 3.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(f"timeout {field.name} must be a positive number, not {value!r}")

    @classmethod
    def total(cls, seconds: float) -> Timeouts:
        """Every phase bounded by the same ``seconds`` (``BINDERY_TIMEOUT``)."""
        return cls(connect=seconds, read=seconds, write=seconds, pool=seconds)


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 10
    max_keepalive: int = 5
    """Idle connections kept open for reuse; the rest are closed when their answer is read."""
    max_request_bytes: int = 1 << 20
    max_response_bytes: int = 10 << 20

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, int) and value >= 1) or isinstance(value, bool):
                raise ValueError(f"limit {field.name} must be a positive integer, not {value!r}")
        if self.max_keepalive > self.max_connections:
            raise ValueError(
                f"max_keepalive ({self.max_keepalive}) cannot exceed "
                f"max_connections ({self.max_connections})"
            )
