"""The legacy HTTP+SSE fixture server as a remote the test starts, kills and starts again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "fixtures" / "servers" / "sse_server.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SseRemote:
    """``sse_server.py`` on a fixed port; its stderr goes to a file (a pipe nobody reads could
    fill up and stall the server)."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="sse-server-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sse"

    def start(self, ready_within: float = 60.0) -> SseRemote:
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), "--port", str(self.port), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_within
        while b"listening on" not in self._log.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"sse_server.py exited: {self._log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"sse_server.py not listening within {ready_within} s")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.kill()
        self._log.unlink(missing_ok=True)
