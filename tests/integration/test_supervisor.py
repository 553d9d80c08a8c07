"""The supervisor with real processes: start, call, crash, backoff, crash loop, stop, scale."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from roundhouse.events import Event
from roundhouse.manager import AsyncManager

from .conftest import Recorder, eventually, fixture_path, stdio_spec, wait_state


async def test_a_stdio_server_reaches_running_and_answers_a_tool_call(manager: AsyncManager):
    await manager.create_server(stdio_spec("raw", "raw_server.py"))
    await wait_state(manager, "raw", "running")
    result = await manager.call("raw", "tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert result["content"][0]["text"] == "hi"
    view = await manager.get_server("raw")
    assert view["state"] == "running"
    assert view["health"] == "healthy"
    assert psutil.pid_exists(view["instances"][0]["pid"])


async def test_an_sdk_server_reaches_running_and_answers_a_tool_call(manager: AsyncManager):
    await manager.create_server(stdio_spec("sdk", "sdk_server.py"))
    await wait_state(manager, "sdk", "running", timeout=20)
    result = await manager.call("sdk", "tools/call", {"name": "echo", "arguments": {"text": "yo"}})
    assert "yo" in result["content"][0]["text"]


async def test_a_server_killed_with_sigkill_is_running_again_within_two_seconds(
    manager: AsyncManager, recorder: Recorder
):
    await manager.create_server(stdio_spec("raw", "raw_server.py"))
    await wait_state(manager, "raw", "running")
    pid = (await manager.get_server("raw"))["instances"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    await wait_state(manager, "raw", "backoff", timeout=2)
    await wait_state(manager, "raw", "running", timeout=2)
    assert time.monotonic() - killed_at < 2.0
    view = await manager.get_server("raw")
    instance = view["instances"][0]
    assert instance["pid"] != pid
    assert instance["restart_count"] == 1
    assert instance["last_exit_code"] == -signal.SIGKILL
    assert recorder.saw("running", "backoff")
    assert recorder.saw("backoff", "starting")


async def test_a_server_that_exits_at_once_backs_off_to_failed_using_little_cpu(
    manager: AsyncManager, recorder: Recorder
):
    gateway = psutil.Process()
    gateway.cpu_percent()
    started = time.monotonic()
    await manager.create_server(stdio_spec("crashy", "misbehaving_server.py", "--exit-now", "7"))
    # Default backoff: 1 + 2 + 4 + 8 s between the five fast exits.
    await wait_state(manager, "crashy", "failed", timeout=25)
    # The state is set before the event is published: wait for the event too.
    await eventually(lambda: recorder.saw("backoff", "failed"), what="backoff -> failed")
    elapsed = time.monotonic() - started
    cpu = gateway.cpu_percent()
    assert elapsed >= 15 - 0.5, "the backoff delays were not honoured"
    assert cpu < 5.0, f"the gateway used {cpu}% CPU while the server crash-looped"
    view = await manager.get_server("crashy")
    instance = view["instances"][0]
    assert instance["state"] == "failed"
    assert instance["last_exit_code"] == 7
    assert "crash loop" in instance["last_error"]
    assert "exiting at once with code 7" in instance["stderr_tail"]
    reasons = [
        e.data["reason"]
        for e in recorder.events
        if e.kind == "instance.state" and e.data["new"] == "backoff"
    ]
    assert len(reasons) == 5
    assert [r.rsplit("restarting in ", 1)[1] for r in reasons[:4]] == ["1s", "2s", "4s", "8s"]
    assert recorder.transitions()[-1] == ("backoff", "failed")  # nothing after failed


async def test_restart_by_a_person_clears_failed(manager: AsyncManager, tmp_path: Path):
    await manager.create_server(
        stdio_spec(
            "crashy",
            "misbehaving_server.py",
            "--exit-now",
            "3",
            restart={"backoff_initial": 0.05, "max_fast_exits": 2},
        )
    )
    await wait_state(manager, "crashy", "failed", timeout=10)
    await manager.patch_server("crashy", {"transport": {"args": [fixture_path("raw_server.py")]}})
    await wait_state(manager, "crashy", "running", timeout=10)


async def test_a_command_that_does_not_exist_fails_with_the_os_error(manager: AsyncManager):
    await manager.create_server(
        {"slug": "ghost", "transport": {"command": "/nonexistent/bin/mcp-ghost"}}
    )
    await wait_state(manager, "ghost", "failed", timeout=5)
    instance = (await manager.get_server("ghost"))["instances"][0]
    assert "no such file or directory" in instance["last_error"]
    # The gateway is unharmed: another server still starts.
    await manager.create_server(stdio_spec("raw", "raw_server.py"))
    await wait_state(manager, "raw", "running")


async def test_a_file_that_is_not_executable_fails_with_the_os_error(
    manager: AsyncManager, tmp_path: Path
):
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    await manager.create_server({"slug": "noexec", "transport": {"command": str(script)}})
    await wait_state(manager, "noexec", "failed", timeout=5)
    instance = (await manager.get_server("noexec"))["instances"][0]
    assert "permission denied" in instance["last_error"].lower()


@pytest.mark.slow
async def test_stopping_a_server_that_ignores_sigterm_leaves_no_process_of_its_group(
    manager: AsyncManager,
):
    await manager.create_server(
        stdio_spec(
            "stubborn",
            "misbehaving_server.py",
            "--ignore-sigterm",
            "--ignore-stdin-eof",
            "--fork-grandchild",
            timeouts={"start": 10, "stop": 10},
        )
    )
    await wait_state(manager, "stubborn", "running")
    pgid = (await manager.get_server("stubborn"))["instances"][0]["pid"]
    members = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]
    assert len(members) >= 2, "the fixture should have forked a grandchild"
    started = time.monotonic()
    await manager.stop("stubborn")
    # Deaf to stdin's end and to SIGTERM: only the SIGKILL at the stop timeout (10 s) ends it.
    await wait_state(manager, "stubborn", "stopped", timeout=12)
    took = time.monotonic() - started
    assert 9.5 <= took <= 11, f"stopped after {took:.2f}s"
    assert _live_members(pgid) == []


def _live_members(pgid: int) -> list[int]:
    """Processes of the group that are not just waiting to be reaped (zombies hold nothing)."""
    members = []
    for process in psutil.process_iter(["status"]):
        if _pgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
            members.append(process.pid)
    return members


async def test_stop_is_idempotent(manager: AsyncManager):
    await manager.create_server(stdio_spec("raw", "raw_server.py"))
    await wait_state(manager, "raw", "running")
    await manager.stop("raw")
    await manager.stop("raw")
    await wait_state(manager, "raw", "stopped")
    await manager.stop("raw")
    assert (await manager.get_server("raw"))["state"] == "stopped"


async def test_scaling_up_and_down_at_run_time(manager: AsyncManager):
    await manager.create_server(stdio_spec("raw", "raw_server.py"))
    await wait_state(manager, "raw", "running")
    await manager.scale("raw", 3)
    for ordinal in range(3):
        await wait_state(manager, "raw", "running", ordinal=ordinal)
    pids = [i["pid"] for i in await manager.instances("raw")]
    assert len(set(pids)) == 3
    await manager.scale("raw", 1)
    instances = await manager.instances("raw")
    assert [i["ordinal"] for i in instances] == [0]
    await eventually(
        lambda: not any(psutil.pid_exists(p) for p in pids[1:]), what="scaled-away exit"
    )


async def test_stderr_is_kept_in_a_ring_buffer_and_a_log_file(manager: AsyncManager):
    await manager.create_server(
        stdio_spec("chatty", "misbehaving_server.py", "--stderr-lines", "1500")
    )
    await wait_state(manager, "chatty", "running")

    async def all_lines() -> bool:
        return any(e.line == "stderr line 1500" for e in await manager.logs("chatty", 1000))

    await eventually(all_lines, what="the last stderr line")
    lines = await manager.logs("chatty", 2000)
    assert len(lines) == 1000
    assert lines[0].line == "stderr line 501"
    instance_id = lines[0].instance
    log_file = manager.settings.logs_dir / "chatty" / f"{instance_id}.log"
    assert "stderr line 1\n" in log_file.read_text().replace(" stderr", "\nstderr")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


async def test_the_table_of_ready_instances_agrees_with_every_instance_at_every_event(
    manager: AsyncManager,
):
    # The data plane reads supervisor.ready_table (and an instance's connection, handshake and
    # timeout as plain attributes) on every call, instead of asking each instance. Checked at
    # every event the bus carries, through start, crash, restart, scale up and down, stop and
    # removal: the table lists exactly the instances that take calls, each with its launch's
    # own connection and handshake.
    supervisor = manager.supervisor
    problems: list[str] = []
    checked = 0

    def check(event: Event) -> None:
        nonlocal checked
        checked += 1
        for slug in {*supervisor.ready_table, "raw"}:
            listed = list(supervisor.ready_table.get(slug, ()))
            ready = [w for w in supervisor.workers(slug) if w.ready]
            if {id(w) for w in listed} != {id(w) for w in ready}:
                problems.append(f"{event.kind} {event.data}: table {listed} != ready {ready}")
            for worker in listed:
                launch = worker.launch
                assert launch is not None
                if worker.connection is not launch.connection:
                    problems.append(f"{event.kind}: stale connection of {worker.id}")
                if worker.handshake is not launch.handshake:
                    problems.append(f"{event.kind}: stale handshake of {worker.id}")
                if worker.call_timeout != worker.spec.timeouts.call:
                    problems.append(f"{event.kind}: stale call timeout of {worker.id}")

    manager.bus.add_listener(check)
    await manager.create_server(stdio_spec("raw", "raw_server.py"))
    await wait_state(manager, "raw", "running")
    assert [w.id for w in supervisor.ready_table["raw"]] == [supervisor.workers("raw")[0].id]
    os.kill((await manager.get_server("raw"))["instances"][0]["pid"], signal.SIGKILL)
    await wait_state(manager, "raw", "backoff", timeout=2)
    assert "raw" not in supervisor.ready_table
    await wait_state(manager, "raw", "running", timeout=5)
    await manager.scale("raw", 2)
    await wait_state(manager, "raw", "running", ordinal=1)
    assert len(supervisor.ready_table["raw"]) == 2
    await manager.scale("raw", 1)
    assert len(supervisor.ready_table["raw"]) == 1
    await manager.stop("raw")
    await wait_state(manager, "raw", "stopped")
    assert "raw" not in supervisor.ready_table
    await manager.delete_server("raw")
    assert supervisor.ready_table == {}
    manager.bus.remove_listener(check)
    assert checked > 10
    assert not problems, "\n".join(problems)
