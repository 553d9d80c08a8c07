"""Local HTTP servers with real processes and sockets: ports from the range, reachable, released.

Every test runs its own gateway on its own slice of a window of ports picked at random per test
process (below the ephemeral range, all free when picked), so these tests, the servers other
tests start on the default range, and a second run of this file at the same time never meet.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from roundhouse.control.runtimes.ports import port_is_free
from roundhouse.control.states import RUNNING_STATES, InstanceState
from roundhouse.events import Event
from roundhouse.manager import AsyncManager
from tests.portwindow import free_window

from .conftest import PYTHON, Recorder, eventually, fixture_path, make_settings, wait_state

ECHO = {"name": "echo", "arguments": {"text": "hi"}}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}


#: This process's window: each test takes its own slice (BASE + offset).
BASE = free_window(80)


def local_http_spec(slug: str, script: str = "http_raw_server.py", **extra: Any) -> dict[str, Any]:
    """A local-http spec for a fixture script; a quick stop (the fixtures ignore stdin)."""
    spec: dict[str, Any] = {
        "slug": slug,
        "transport": {
            "type": "local-http",
            "command": PYTHON,
            "args": [fixture_path(script), "--port", "{port}"],
        },
        "timeouts": {"start": 10, "stop": 0.5},
    }
    spec.update(extra)
    return spec


@asynccontextmanager
async def gateway(tmp_path: Path, low: int, high: int) -> AsyncIterator[AsyncManager]:
    async with AsyncManager(make_settings(tmp_path, port_range=(low, high))) as manager:
        yield manager


@contextmanager
def foreign_listener(port: int) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock


def rpc_result(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC result of a Streamable HTTP answer, a JSON body or an SSE stream."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message = json.loads(data[-1])
    else:
        message = response.json()
    result: dict[str, Any] = message["result"]
    return result


async def instance_views(manager: AsyncManager, slug: str) -> list[dict[str, Any]]:
    return await manager.instances(slug)


async def assert_serves_then_frees_its_port(
    tmp_path: Path, script: str, *args: str, start: float
) -> None:
    async with gateway(tmp_path, BASE, BASE + 20) as manager:
        spec = local_http_spec("web", script)
        spec["transport"]["args"] += list(args)
        spec["timeouts"]["start"] = start
        await manager.create_server(spec)
        await wait_state(manager, "web", "running", timeout=start)

        [instance] = await instance_views(manager, "web")
        port = instance["port"]
        assert BASE <= port <= BASE + 20
        assert instance["endpoint"] == f"http://127.0.0.1:{port}/mcp"
        assert manager.ports.taken == {port}
        assert not port_is_free(port)

        result = await manager.call("web", "tools/call", ECHO)
        assert "hi" in result["content"][0]["text"]
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            response = await client.post(
                instance["endpoint"],
                json=INITIALIZE,
                headers={"accept": "application/json, text/event-stream"},
            )
        assert rpc_result(response)["protocolVersion"]

        await manager.stop("web")
        await wait_state(manager, "web", "stopped")
        assert port not in manager.ports.taken
        assert port_is_free(port)
        [instance] = await instance_views(manager, "web")
        assert instance["port"] is None
        assert instance["endpoint"] is None


async def test_a_raw_local_http_server_gets_a_port_in_range_answers_and_frees_it_on_stop(
    tmp_path: Path,
):
    await assert_serves_then_frees_its_port(tmp_path, "http_raw_server.py", start=10)


async def test_an_sdk_local_http_server_gets_a_port_in_range_answers_and_frees_it_on_stop(
    tmp_path: Path,
):
    await assert_serves_then_frees_its_port(tmp_path, "sdk_server.py", "--http", start=30)


async def test_a_port_a_foreign_program_listens_on_is_skipped(tmp_path: Path):
    async with gateway(tmp_path, BASE + 21, BASE + 23) as manager:
        with foreign_listener(BASE + 21):
            await manager.create_server(local_http_spec("web"))
            await wait_state(manager, "web", "running")
            [instance] = await instance_views(manager, "web")
            # The next port, or the one after while it has leftovers in TIME_WAIT.
            assert instance["port"] in (BASE + 22, BASE + 23)
            await manager.call("web", "tools/call", ECHO)


async def test_two_instances_get_two_ports_and_scaling_back_to_one_frees_one(tmp_path: Path):
    async with gateway(tmp_path, BASE + 24, BASE + 30) as manager:
        await manager.create_server(local_http_spec("web", instances={"min": 1, "max": 3}))
        await wait_state(manager, "web", "running")
        await manager.scale("web", 2)
        await wait_state(manager, "web", "running", ordinal=1)
        ports = [view["port"] for view in await instance_views(manager, "web")]
        assert len(set(ports)) == 2
        assert all(BASE + 24 <= port <= BASE + 30 for port in ports)
        assert manager.ports.taken == set(ports)
        async with httpx.AsyncClient(trust_env=False) as client:
            for port in ports:
                assert (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200

        await manager.scale("web", 1)
        [kept] = await instance_views(manager, "web")
        [gone] = set(ports) - {kept["port"]}
        assert manager.ports.taken == {kept["port"]}
        assert port_is_free(gone)
        assert not port_is_free(kept["port"])
        await manager.call("web", "tools/call", ECHO)


async def test_an_instance_that_finds_the_range_exhausted_backs_off_and_the_gateway_carries_on(
    tmp_path: Path,
):
    async with gateway(tmp_path, BASE + 31, BASE + 31) as manager:
        spec = local_http_spec(
            "web", instances={"min": 1, "max": 2}, restart={"backoff_initial": 0.2}
        )
        await manager.create_server(spec)
        await wait_state(manager, "web", "running")
        await manager.scale("web", 2)
        await wait_state(manager, "web", "backoff", ordinal=1)

        first, second = await instance_views(manager, "web")
        port = BASE + 31
        assert second["last_error"].startswith(f"no free port left in {port}-{port}")
        assert second["port"] is None and second["pid"] is None
        assert first["port"] == BASE + 31 and first["state"] == "running"
        assert manager.ports.taken == {BASE + 31}
        result = await manager.call("web", "tools/call", ECHO)
        assert result["content"][0]["text"] == "hi"
        assert (await manager.health())["total_servers"] == 1


async def test_an_instance_waiting_for_a_port_starts_once_another_server_frees_it(
    tmp_path: Path,
):
    async with gateway(tmp_path, BASE + 32, BASE + 32) as manager:
        await manager.create_server(local_http_spec("holder"))
        await wait_state(manager, "holder", "running")
        patient = {"backoff_initial": 0.2, "backoff_max": 0.5, "max_fast_exits": 100}
        await manager.create_server(local_http_spec("waiter", restart=patient))
        await wait_state(manager, "waiter", "backoff")

        # The holder's process leaves its keep-alive connections with the gateway behind in
        # FIN_WAIT/TIME_WAIT; they must not keep the port from the waiter for a minute.
        await manager.stop("holder")
        await wait_state(manager, "holder", "stopped")
        await wait_state(manager, "waiter", "running", timeout=5)
        [instance] = await instance_views(manager, "waiter")
        assert instance["port"] == BASE + 32
        await manager.call("waiter", "tools/call", ECHO)


async def test_an_instance_waiting_for_a_port_with_default_crash_loop_limits_starts_later(
    tmp_path: Path,
):
    async with gateway(tmp_path, BASE + 33, BASE + 33) as manager:
        await manager.create_server(local_http_spec("holder"))
        await wait_state(manager, "holder", "running")
        await manager.create_server(local_http_spec("waiter", restart={"backoff_initial": 0.1}))
        await asyncio.sleep(2.0)  # 0.1 + 0.2 + 0.4 + 0.8 s of backoff: five tries
        await manager.stop("holder")
        await wait_state(manager, "waiter", "running", timeout=3)


async def test_a_server_whose_health_path_never_answers_2xx_is_not_run_and_frees_its_port(
    tmp_path: Path,
):
    async with gateway(tmp_path, BASE + 34, BASE + 34) as manager:
        recorder = Recorder()
        manager.bus.add_listener(recorder)
        spec = local_http_spec("web", restart={"backoff_initial": 3})
        spec["transport"]["health_path"] = "/never"  # the fixture answers 404
        spec["timeouts"]["start"] = 1.0
        started = time.monotonic()
        await manager.create_server(spec)
        await wait_state(manager, "web", "backoff", timeout=5)
        assert time.monotonic() - started >= 1.0

        [instance] = await instance_views(manager, "web")
        assert instance["last_error"] == "not ready within 1s"
        assert ("starting", "running") not in recorder.transitions()
        assert instance["port"] is None
        assert manager.ports.taken == frozenset()
        assert port_is_free(BASE + 34)


async def test_a_port_placeholder_in_an_env_value_is_replaced_and_port_is_set(tmp_path: Path):
    # The server learns its port from the environment only, and prints what it was given.
    script = (
        "import os, sys\n"
        "sys.stderr.write(f\"LISTEN_ON={os.environ['LISTEN_ON']} PORT={os.environ['PORT']}\\n\")\n"
        "sys.stderr.flush()\n"
        "port = os.environ['LISTEN_ON'].rsplit(':', 1)[1]\n"
        f"os.execv(sys.executable, [sys.executable, {fixture_path('http_raw_server.py')!r},"
        " '--port', port])\n"
    )
    async with gateway(tmp_path, BASE + 35, BASE + 37) as manager:
        spec = local_http_spec("web")
        spec["transport"]["args"] = ["-c", script]
        spec["transport"]["env"] = {"LISTEN_ON": "127.0.0.1:{port}"}
        await manager.create_server(spec)
        await wait_state(manager, "web", "running")
        [instance] = await instance_views(manager, "web")
        port = instance["port"]
        assert BASE + 35 <= port <= BASE + 37
        lines = [entry.line for entry in await manager.logs("web")]
        assert f"LISTEN_ON=127.0.0.1:{port} PORT={port}" in lines
        await manager.call("web", "tools/call", ECHO)


# --- a hypothesis-driven sequence of deploys against the real gateway -------------------------

LOW, HIGH = BASE + 50, BASE + 70
SLUGS = ("alpha", "beta", "gamma")


def listening_ports_of_our_servers() -> set[int]:
    """The ports in the range that a process started by this gateway listens on.

    Only our own children count: another run of this file may be using the same ports."""
    ports: set[int] = set()
    for child in psutil.Process().children(recursive=True):
        try:
            connections = child.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    return {port for port in ports if LOW <= port <= HIGH}


def describe_holders(ports: set[int]) -> str:
    """Who holds these ports, for a failure message: state, pid and command of each socket."""
    lines = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port in ports:
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline()) if conn.pid else "?"
            except psutil.Error:
                command = "(gone)"
            lines.append(f"{conn.laddr.port} {conn.status} pid={conn.pid} {command}")
    return "; ".join(lines) or f"nobody holds {sorted(ports)} any more"


class GatewayMachine(RuleBasedStateMachine):
    """Create, stop, start, scale, delete and kill local-http servers in a random order.

    After each step has settled: the ports of live instances are distinct, inside the range,
    exactly what the allocator holds, and exactly what listens in the range. On every state
    change in between: no port is recorded for two instances.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory(prefix="roundhouse-ports-")
        self.runner = asyncio.Runner()
        self.manager = AsyncManager(make_settings(Path(self.tmp.name), port_range=(LOW, HIGH)))
        self.runner.run(self.manager.__aenter__())
        self.manager.bus.add_listener(self._on_event)
        self.desired: dict[str, int] = {}  # slug -> instances; 0 = stopped
        self.violations: list[str] = []

    def _on_event(self, event: Event) -> None:
        if event.kind != "instance.state":
            return
        ports = [w.record.port for w in self.manager.supervisor.all_workers() if w.record.port]
        if len(ports) != len(set(ports)):
            self.violations.append(f"duplicate ports {sorted(ports)} at {event.data}")

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    async def _settled(self) -> bool:
        for slug, count in self.desired.items():
            workers = self.manager.supervisor.workers(slug)
            wanted = {InstanceState.RUNNING} if count else {InstanceState.STOPPED}
            if count and len(workers) != count:
                return False
            if any(w.state not in wanted | {InstanceState.FAILED} for w in workers):
                return False
        return True

    def settle(self) -> None:
        self.run(eventually(self._settled, timeout=15, what="the gateway to settle"))

    @precondition(lambda self: len(self.desired) < len(SLUGS))
    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from([s for s in SLUGS if s not in self.desired]))
        spec = local_http_spec(
            slug, instances={"min": 1, "max": 3}, restart={"backoff_initial": 0.05}
        )
        spec["timeouts"]["stop"] = 0.2
        self.run(self.manager.create_server(spec))
        self.desired[slug] = 1
        self.settle()

    @precondition(lambda self: bool(self.desired))
    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.desired)))
        self.run(self.manager.stop(slug))
        self.desired[slug] = 0
        self.settle()

    @precondition(lambda self: bool(self.desired))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.desired)))
        view = self.run(self.manager.start(slug))
        self.desired[slug] = len(view["instances"]) or 1
        self.settle()

    @precondition(lambda self: any(self.desired.values()))
    @rule(data=st.data(), count=st.integers(min_value=1, max_value=3))
    def scale(self, data: st.DataObject, count: int) -> None:
        slug = data.draw(st.sampled_from(sorted(s for s, n in self.desired.items() if n)))
        self.run(self.manager.scale(slug, count))
        self.desired[slug] = count
        self.settle()

    @precondition(lambda self: bool(self.desired))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.desired)))
        self.run(self.manager.delete_server(slug))
        del self.desired[slug]
        self.settle()

    @precondition(lambda self: any(self.desired.values()))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(s for s, n in self.desired.items() if n)))
        worker = data.draw(st.sampled_from(self.manager.supervisor.workers(slug)))
        if worker.record.pid is not None:
            os.kill(worker.record.pid, signal.SIGKILL)
            self.run(eventually(lambda: worker.state != InstanceState.RUNNING, timeout=5))
        self.settle()

    @precondition(lambda self: any(self.desired.values()))
    @rule(data=st.data())
    def call(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(s for s, n in self.desired.items() if n)))
        if self.manager.supervisor.ready(slug):
            result = self.run(self.manager.call(slug, "tools/call", ECHO))
            assert result["content"][0]["text"] == "hi"

    @invariant()
    def live_ports_are_distinct_in_range_held_and_listening(self) -> None:
        assert not self.violations, self.violations[0]
        live = [
            w.record.port
            for w in self.manager.supervisor.all_workers()
            if w.state in RUNNING_STATES | {InstanceState.STARTING}
        ]
        assert None not in live
        ports = [port for port in live if port is not None]
        assert len(ports) == len(set(ports)), f"a port held twice: {sorted(ports)}"
        assert all(LOW <= port <= HIGH for port in ports)
        assert self.manager.ports.taken == set(ports)
        assert not any(port_is_free(port) for port in ports)
        listening = listening_ports_of_our_servers()
        assert listening == set(ports), describe_holders(listening ^ set(ports))

    def teardown(self) -> None:
        try:
            self.run(self.manager.__aexit__(None, None, None))
            self.runner.close()
        finally:
            self.tmp.cleanup()


GatewayMachine.TestCase.settings = settings(
    max_examples=4,
    stateful_step_count=50,
    deadline=None,
    # Shrinking re-runs real processes for minutes; the failing steps are printed as they are.
    phases=[Phase.explicit, Phase.generate],
)
test_live_local_http_instances_never_share_a_port_over_random_deploys = GatewayMachine.TestCase


async def test_a_local_http_server_that_prints_to_stdout_is_not_blocked_and_its_lines_are_logged(
    tmp_path: Path,
) -> None:
    """5,000 lines (~340 KiB, five times a pipe's buffer) on stdout before it listens: unread,
    the server would block on its first full pipe and never become ready."""
    async with gateway(tmp_path, BASE + 60, BASE + 65) as manager:
        spec = local_http_spec("chatty")
        spec["transport"]["args"] += ["--stdout-lines", "5000"]
        await manager.create_server(spec)
        await wait_state(manager, "chatty", "running", timeout=10)
        result = await manager.call("chatty", "tools/call", ECHO)
        assert "hi" in result["content"][0]["text"]
        lines = [entry.line for entry in await manager.logs("chatty", 10_000)]
        # The ring keeps the last lines; the last one printed is there, in order.
        printed = [line.split()[2] for line in lines if line.startswith("stdout line ")]
        assert printed[-1] == "5000"
        assert printed == [str(n) for n in range(5001 - len(printed), 5001)]
