"""Fixtures for tests that run real instances: a manager on a temporary data dir, helpers to
build specs for the fixture servers, and a poller for conditions that take real time."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from roundhouse.events import Event
from roundhouse.manager import AsyncManager
from roundhouse.settings import Settings

SERVERS = Path(__file__).parent.parent / "fixtures" / "servers"
PYTHON = sys.executable


def fixture_path(name: str) -> str:
    return str(SERVERS / name)


def stdio_spec(slug: str, script: str, *args: str, **extra: Any) -> dict[str, Any]:
    """A spec for a fixture script run by this Python, with quick health checks."""
    spec: dict[str, Any] = {
        "slug": slug,
        "transport": {"type": "stdio", "command": PYTHON, "args": [fixture_path(script), *args]},
        "timeouts": {"start": 10, "stop": 3},
    }
    spec.update(extra)
    return spec


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it is true; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Recorder:
    """Every event of the bus, in order, for assertions on transitions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def transitions(self, instance: str | None = None) -> list[tuple[str, str]]:
        return [
            (e.data["old"], e.data["new"])
            for e in self.events
            if e.kind == "instance.state" and (instance is None or e.data["instance"] == instance)
        ]

    def saw(self, old: str, new: str) -> bool:
        return (old, new) in self.transitions()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "port": 0}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[AsyncManager]:
    async with AsyncManager(make_settings(tmp_path)) as manager:
        yield manager


@pytest.fixture
def recorder(manager: AsyncManager) -> Recorder:
    recorder = Recorder()
    manager.bus.add_listener(recorder)
    return recorder


async def state_of(manager: AsyncManager, slug: str, ordinal: int = 0) -> str:
    workers = manager.supervisor.workers(slug)
    return workers[ordinal].record.state.value if len(workers) > ordinal else "absent"


async def wait_state(
    manager: AsyncManager, slug: str, state: str, *, timeout: float = 10.0, ordinal: int = 0
) -> None:
    async def reached() -> bool:
        return await state_of(manager, slug, ordinal) == state

    await eventually(reached, timeout=timeout, what=f"{slug}[{ordinal}] to be {state}")
