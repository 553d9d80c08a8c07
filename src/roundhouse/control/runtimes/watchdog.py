"""A watchdog process that kills every server's process group if the gateway dies.

``PR_SET_PDEATHSIG`` kills an instance's leader when the gateway dies, even on ``kill -9``, but
not the leader's own children (``npx`` → ``node``, a forked grandchild). The watchdog closes that
gap: it is a tiny separate Python process (``python -S``, no imports beyond ``os`` and
``signal``) that reads ``+PGID`` / ``-PGID`` lines from a pipe the gateway holds. When the pipe
reaches EOF — the gateway exited, however it exited — it sends SIGTERM to every group it still
knows, waits a moment, and sends SIGKILL to whatever is left. On a clean shutdown the supervisor
has already stopped every group and unregistered it, so the watchdog has nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when the gateway died.
WATCHDOG_GRACE = 1.5

_SCRIPT = f"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
groups = set()
stdin = sys.stdin.buffer
for line in stdin:
    line = line.strip()
    if line[:1] == b"+":
        groups.add(int(line[1:]))
    elif line[:1] == b"-":
        groups.discard(int(line[1:]))
def signal_all(sig):
    alive = set()
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
            alive.add(pgid)
        except OSError:
            pass
    return alive
groups = signal_all(signal.SIGTERM)
deadline = time.monotonic() + {WATCHDOG_GRACE}
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    groups = signal_all(0)
signal_all(signal.SIGKILL)
"""


class Watchdog:
    """Owns the watchdog process; ``watch``/``unwatch`` tell it which groups to kill."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # A plain Popen: the watchdog must be running before the first server spawns, and the
        # pipe's write end stays in this process only (close-on-exec), so servers never hold it.
        self._process = subprocess.Popen(
            [sys.executable, "-S", "-c", _SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _send(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        try:
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
        except (BrokenPipeError, ValueError):
            log.warning("the process watchdog is gone; orphans are only cleaned at next start")

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def unwatch(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    async def stop(self) -> None:
        """Close the pipe; with no groups registered the watchdog exits at once."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.stdin is not None:
            process.stdin.close()
        for _ in range(100):
            if process.poll() is not None:
                return
            await asyncio.sleep(0.02)
        process.kill()
        process.wait()
