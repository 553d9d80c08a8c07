"""One test per allowed instance transition, each driven by a real process.

``controlled_server.py`` changes its health on request (files in a control directory), so
each state is reached the way it would be in production: slow answers, lost answers, crashes,
requests from a person.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from roundhouse.control.states import (
    TRANSITIONS,
    IllegalTransition,
    InstanceState,
    check_transition,
)
from roundhouse.manager import AsyncManager
from roundhouse.spec import ServerSpec

from .conftest import Recorder, eventually, stdio_spec, wait_state

SLUG = "ctl"


@pytest.fixture
def control(tmp_path: Path) -> Path:
    path = tmp_path / "control"
    path.mkdir()
    return path


def controlled(control: Path, **extra: Any) -> dict[str, Any]:
    health = {"interval": 0.1, "timeout": 0.5, "failures_before_restart": 100}
    health.update(extra.pop("health", {}))
    restart = {"backoff_initial": 0.1}
    restart.update(extra.pop("restart", {}))
    return stdio_spec(
        SLUG, "controlled_server.py", str(control), health=health, restart=restart, **extra
    )


async def running(manager: AsyncManager, control: Path, **extra: Any) -> None:
    await manager.create_server(controlled(control, **extra))
    await wait_state(manager, SLUG, "running")


def make(control: Path, name: str, value: str = "") -> None:
    (control / name).write_text(value)


def clear(control: Path, name: str) -> None:
    (control / name).unlink()


async def saw(recorder: Recorder, old: str, new: str, timeout: float = 10.0) -> None:
    await eventually(lambda: recorder.saw(old, new), timeout=timeout, what=f"{old} -> {new}")


def kill(manager: AsyncManager) -> None:
    os.kill(manager.supervisor.workers(SLUG)[0].record.pid or 0, signal.SIGKILL)


def test_the_table_holds_exactly_the_transitions_these_tests_cover():
    covered = {
        (old, new)
        for name in globals()
        if name.startswith("test_transition_")
        for old, new in [name.removeprefix("test_transition_").split("_to_")]
    }
    table = {(old.value, new.value) for old, targets in TRANSITIONS.items() for new in targets}
    assert covered == table


def test_an_illegal_transition_raises():
    with pytest.raises(IllegalTransition, match="stopped -> running"):
        check_transition(InstanceState.STOPPED, InstanceState.RUNNING)


async def test_transition_pending_to_starting(manager, recorder, control):
    await manager.create_server(controlled(control))
    await saw(recorder, "pending", "starting")


async def test_transition_pending_to_stopped(manager, recorder, control):
    spec = ServerSpec.model_validate(controlled(control))
    await manager.store.create_server(spec, 1)
    await manager.supervisor.apply(spec, 1, [])
    # Told to stop before its task ever ran: it never starts.
    manager.supervisor.workers(SLUG)[0].want_stopped()
    await saw(recorder, "pending", "stopped")
    assert not recorder.saw("pending", "starting")


async def test_transition_starting_to_running(manager, recorder, control):
    await running(manager, control)
    assert recorder.saw("starting", "running")


async def test_transition_starting_to_backoff(manager, recorder):
    await manager.create_server(stdio_spec(SLUG, "misbehaving_server.py", "--exit-now", "4"))
    await saw(recorder, "starting", "backoff")


async def test_transition_starting_to_failed(manager, recorder):
    await manager.create_server({"slug": SLUG, "transport": {"command": "/no/such/command"}})
    await saw(recorder, "starting", "failed")


async def test_transition_starting_to_stopping(manager, recorder):
    await manager.create_server(stdio_spec(SLUG, "misbehaving_server.py", "--hang-on-initialize"))
    await wait_state(manager, SLUG, "starting")
    await manager.stop(SLUG)
    await saw(recorder, "starting", "stopping")
    await wait_state(manager, SLUG, "stopped")


async def test_transition_running_to_degraded(manager, recorder, control):
    await running(manager, control)
    make(control, "slow", "0.3")
    await saw(recorder, "running", "degraded")
    assert (await manager.get_server(SLUG))["instances"][0]["health"] == "degraded"


async def test_transition_running_to_unhealthy(manager, recorder, control):
    await running(manager, control)
    make(control, "hang")
    await saw(recorder, "running", "unhealthy")


async def test_transition_running_to_backoff(manager, recorder, control):
    await running(manager, control)
    kill(manager)
    await saw(recorder, "running", "backoff")


async def test_transition_running_to_stopping(manager, recorder, control):
    await running(manager, control)
    await manager.stop(SLUG)
    await saw(recorder, "running", "stopping")


async def test_transition_degraded_to_running(manager, recorder, control):
    await running(manager, control)
    make(control, "slow", "0.3")
    await wait_state(manager, SLUG, "degraded")
    clear(control, "slow")
    await saw(recorder, "degraded", "running")


async def test_transition_degraded_to_unhealthy(manager, recorder, control):
    await running(manager, control)
    make(control, "slow", "0.3")
    await wait_state(manager, SLUG, "degraded")
    make(control, "hang")
    await saw(recorder, "degraded", "unhealthy")


async def test_transition_degraded_to_backoff(manager, recorder, control):
    await running(manager, control)
    make(control, "slow", "0.3")
    await wait_state(manager, SLUG, "degraded")
    kill(manager)
    await saw(recorder, "degraded", "backoff")


async def test_transition_degraded_to_stopping(manager, recorder, control):
    await running(manager, control)
    make(control, "slow", "0.3")
    await wait_state(manager, SLUG, "degraded")
    await manager.stop(SLUG)
    await saw(recorder, "degraded", "stopping")


async def test_transition_unhealthy_to_running(manager, recorder, control):
    await running(manager, control)
    make(control, "hang")
    await wait_state(manager, SLUG, "unhealthy")
    clear(control, "hang")
    await saw(recorder, "unhealthy", "running")


async def test_transition_unhealthy_to_degraded(manager, recorder, control):
    await running(manager, control)
    make(control, "hang")
    await wait_state(manager, SLUG, "unhealthy")
    make(control, "slow", "0.3")
    clear(control, "hang")
    await saw(recorder, "unhealthy", "degraded")


async def test_transition_unhealthy_to_backoff(manager, recorder, control):
    # Repeated failed checks restart the instance: that goes through backoff.
    await running(manager, control, health={"failures_before_restart": 2})
    make(control, "hang")
    await saw(recorder, "unhealthy", "backoff")
    clear(control, "hang")
    await wait_state(manager, SLUG, "running")
    instance = (await manager.get_server(SLUG))["instances"][0]
    assert instance["restart_count"] == 1
    assert "failed health checks" in instance["last_error"]


async def test_transition_unhealthy_to_stopping(manager, recorder, control):
    await running(manager, control)
    make(control, "hang")
    await wait_state(manager, SLUG, "unhealthy")
    await manager.stop(SLUG)
    await saw(recorder, "unhealthy", "stopping")


async def test_transition_backoff_to_starting(manager, recorder, control):
    await running(manager, control)
    kill(manager)
    await saw(recorder, "backoff", "starting")
    await wait_state(manager, SLUG, "running")


async def test_transition_backoff_to_failed(manager, recorder):
    await manager.create_server(
        stdio_spec(
            SLUG,
            "misbehaving_server.py",
            "--exit-now",
            "5",
            restart={"backoff_initial": 0.05, "max_fast_exits": 2},
        )
    )
    await saw(recorder, "backoff", "failed")


async def test_transition_backoff_to_stopped(manager, recorder):
    await manager.create_server(
        stdio_spec(SLUG, "misbehaving_server.py", "--exit-now", restart={"backoff_initial": 60})
    )
    await wait_state(manager, SLUG, "backoff")
    await manager.stop(SLUG)
    await saw(recorder, "backoff", "stopped", timeout=2)


async def test_transition_stopping_to_stopped(manager, recorder, control):
    await running(manager, control)
    await manager.stop(SLUG)
    await saw(recorder, "stopping", "stopped")


async def test_transition_stopped_to_starting(manager, recorder, control):
    await running(manager, control)
    await manager.stop(SLUG)
    await wait_state(manager, SLUG, "stopped")
    await manager.start(SLUG)
    await saw(recorder, "stopped", "starting")
    await wait_state(manager, SLUG, "running")


async def test_transition_failed_to_starting(manager, recorder):
    await manager.create_server({"slug": SLUG, "transport": {"command": "/no/such/command"}})
    await wait_state(manager, SLUG, "failed")
    await manager.restart(SLUG)
    await saw(recorder, "failed", "starting")


async def test_transition_failed_to_stopped(manager, recorder):
    await manager.create_server({"slug": SLUG, "transport": {"command": "/no/such/command"}})
    await wait_state(manager, SLUG, "failed")
    await manager.stop(SLUG)
    await saw(recorder, "failed", "stopped")
