"""Ports for local-http servers: from a configured range, free on the host, never shared.

"Free" means a server could listen on the port right now. A stopped server leaves its
connections behind in TIME_WAIT or FIN_WAIT for up to a minute; they do not stop the next
server from listening (servers bind with ``SO_REUSEADDR``: Python's ``http.server``, uvicorn,
Node, Go and Rust all do), so they do not make a port taken. They do make it second choice:
:meth:`PortAllocator.allocate` hands out a port without leftovers first.
"""

from __future__ import annotations

import socket

from roundhouse.errors import Conflict

__all__ = ["PortAllocator", "port_is_free"]

#: The address a port is checked on: the wildcard conflicts with a listener on any IPv4
#: address of the host (and with a dual-stack IPv6 one), not only with one on loopback. The
#: check binds and closes at once; it never listens.
ANY_HOST = "0.0.0.0"  # noqa: S104


def port_is_free(port: int, host: str = ANY_HOST) -> bool:
    """True when nothing listens on ``host:port`` and a server could listen there right now.

    Connections a stopped server left in TIME_WAIT do not count: the check binds with
    ``SO_REUSEADDR``, as the servers do.
    """
    return _can_bind(port, host, reuse=True)


def _is_clean(port: int, host: str = ANY_HOST) -> bool:
    """True when no socket at all holds the port, not even one in TIME_WAIT."""
    return _can_bind(port, host, reuse=False)


def _can_bind(port: int, host: str, *, reuse: bool) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports from ``low..high`` (inclusive); a port is ours until :meth:`release`.

    The cursor moves on after each allocation so a port just released is the last to be handed
    out again: a server that is slow to let go of its socket does not collide with its successor.
    A port someone listens on is skipped, whoever holds it, so the allocator never trusts its own
    bookkeeping alone.
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
        """The next port that is neither ours nor listened on; a clean one if there is one.

        Raises :class:`~roundhouse.errors.Conflict` when every port of the range is taken.
        """
        size = self.high - self.low + 1
        second_choice: int | None = None
        for step in range(size):
            port = self.low + (self._cursor - self.low + step) % size
            if port in self._taken:
                continue
            if _is_clean(port):
                break
            if second_choice is None and port_is_free(port):
                second_choice = port
        else:
            if second_choice is None:
                raise Conflict(
                    f"no free port left in {self.low}-{self.high}: {len(self._taken)} held by"
                    f" instances, {size - len(self._taken)} in use by other processes"
                )
            port = second_choice
        self._taken.add(port)
        self._cursor = port + 1 if port < self.high else self.low
        return port

    def reserve(self, port: int) -> None:
        """Mark a port as ours without checking (an adopted instance already listens on it)."""
        self._taken.add(port)

    def release(self, port: int | None) -> None:
        if port is not None:
            self._taken.discard(port)
