"""Ports for tests that need a fixed range: a random window no socket holds."""

from __future__ import annotations

import random
import socket


def free_window(size: int) -> int:
    """The first of ``size`` consecutive ports that no socket holds (not even in TIME_WAIT),
    picked at random in 20000-32000, so concurrent test runs rarely meet."""

    def clean(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # a probe, closed at once
            except OSError:
                return False
        return True

    for _ in range(200):
        base = random.randrange(20_000, 32_000 - size)
        if all(clean(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no window of {size} free ports found")
