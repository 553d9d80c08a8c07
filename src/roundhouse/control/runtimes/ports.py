"""Ports for local-http servers: from a configured range, free on the host, never shared."""

from __future__ import annotations

import socket

from roundhouse.errors import Conflict

__all__ = ["PortAllocator", "port_is_free"]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and we could bind it right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports from ``low..high`` (inclusive); a port is ours until :meth:`release`.

    The cursor moves on after each allocation so a port just released is the last to be handed
    out again: a server that is slow to let go of its socket does not collide with its successor.
    """

    def __init__(self, low: int, high: int) -> None:
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"port range {low}-{high} is inverted or outside 1-65535")
        self.low = low
        self.high = high
        self._taken: set[int] = set()
        self._cursor = low

    @property
    def taken(self) -> frozenset[int]:
        return frozenset(self._taken)

    def allocate(self) -> int:
        size = self.high - self.low + 1
        for step in range(size):
            port = self.low + (self._cursor - self.low + step) % size
            if port in self._taken or not port_is_free(port):
                continue
            self._taken.add(port)
            self._cursor = port + 1 if port < self.high else self.low
            return port
        raise Conflict(f"no free port left in {self.low}-{self.high}")

    def reserve(self, port: int) -> None:
        """Mark a port as ours without checking (an adopted instance already listens on it)."""
        self._taken.add(port)

    def release(self, port: int | None) -> None:
        if port is not None:
            self._taken.discard(port)
