"""Run ``roundhouse up`` as a real process for tests that kill it, restart it, and talk to it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

_LISTENING = re.compile(r"listening on (http://\S+)")


class Gateway:
    """One ``python -m roundhouse up`` process on an ephemeral port."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log = data_dir.parent / f"gateway-{time.monotonic_ns()}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "roundhouse",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log_handle,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_url()
        self.client = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def _wait_for_url(self, timeout: float = 30.0) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"gateway exited early:\n{self.log.read_text()}")
            match = _LISTENING.search(line)
            if match:
                return match.group(1)
        raise RuntimeError("gateway did not print its URL in time")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def wait_running(
        self, slug: str, *, count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        instances: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            instances = self.request("GET", f"/api/servers/{slug}/instances").json()
            if len(instances) == count and all(i["state"] == "running" for i in instances):
                return instances
            time.sleep(0.05)
        raise AssertionError(f"{slug} not running: {instances}")

    @property
    def watchdog_pids(self) -> list[int]:
        children = psutil.Process(self.process.pid).children()
        return [c.pid for c in children if "-S" in c.cmdline()[:3]]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.close()
        return self.process.returncode

    def close(self) -> None:
        self.client.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_handle.close()


def alive(pid: int) -> bool:
    """A process that runs (a zombie waiting to be reaped holds nothing and does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_all_dead(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]
