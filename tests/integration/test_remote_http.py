"""Remote ``http`` servers: reached at their URL with their own credentials; a remote that goes
away backs off and comes back, it is never marked failed (it is not ours to crash-loop)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from roundhouse.manager import AsyncManager

from .conftest import Recorder, fixture_path, wait_state


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Remote:
    """A stand-alone http_raw_server the test starts and stops, as a remote would come and go."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                fixture_path("http_raw_server.py"),
                "--port",
                str(self.port),
                *self.args,
            ],
            stderr=subprocess.PIPE,
        )
        assert self.process.stderr is not None
        self.process.stderr.readline()  # "listening on ..."

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote("--require-header", "Authorization:Bearer s3cret-token")
    server.start()
    yield server
    server.stop()


def remote_spec(url: str, **extra: object) -> dict[str, object]:
    return {
        "slug": "remote",
        "transport": {"type": "http", "url": url},
        "auth": {"type": "bearer", "token": "s3cret-token"},
        "health": {"interval": 0.1, "timeout": 0.5, "failures_before_restart": 2},
        "restart": {"backoff_initial": 0.1, "backoff_max": 0.2, "max_fast_exits": 2},
        **extra,
    }


async def test_a_remote_server_is_reached_with_its_own_credentials(
    manager: AsyncManager, remote: Remote
):
    await manager.create_server(remote_spec(remote.url))
    await wait_state(manager, "remote", "running")
    result = await manager.call(
        "remote", "tools/call", {"name": "echo", "arguments": {"text": "x"}}
    )
    assert result["content"][0]["text"] == "x"
    instance = (await manager.get_server("remote"))["instances"][0]
    assert instance["endpoint"] == remote.url
    assert instance["pid"] is None


async def test_a_remote_with_a_wrong_token_never_reaches_running(manager: AsyncManager, remote):
    spec = remote_spec(remote.url)
    spec["auth"] = {"type": "bearer", "token": "wrong"}
    await manager.create_server(spec)
    await wait_state(manager, "remote", "backoff")
    view = await manager.get_server("remote")
    assert view["instances"][0]["state"] != "running"
    assert "wrong" not in str(view)


async def test_a_remote_that_goes_away_backs_off_without_failing_and_recovers(
    manager: AsyncManager, recorder: Recorder, remote: Remote
):
    await manager.create_server(remote_spec(remote.url))
    await wait_state(manager, "remote", "running")
    remote.stop()
    await wait_state(manager, "remote", "backoff")
    # Longer than max_fast_exits restarts would take a local server to failed.
    await asyncio.sleep(1.5)
    assert ("backoff", "failed") not in recorder.transitions()
    remote.start()
    await wait_state(manager, "remote", "running", timeout=5)
