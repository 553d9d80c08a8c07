"""The things under load: the ceiling (``ceiling.py``) and the gateway (``roundhouse up``).

Each is started as its own process group in front of one upstream, told which CPUs it may use,
and offers one or more routes (URL + tool name) for wrk. ``start_gateway`` also measures what a
person waits for: idle RSS and the time from launch to the first successful ``tools/call``.

A target that cannot serve MCP raises TargetUnavailable with a sentence saying why.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import httpx
import orjson
import psutil
from pipe import measure_start
from scenarios import MODERN_VERSION, REPO, ClientEra, Upstream, echo_request

__all__ = [
    "Route",
    "RunningTarget",
    "TargetUnavailable",
    "call_echo",
    "open_session",
    "start_ceiling",
    "start_gateway",
]

CEILING_SCRIPT: Final = Path(__file__).resolve().parent / "ceiling.py"
START_TIMEOUT_S = 60.0  # not Final: callcost.py raises both for valgrind
REQUEST_TIMEOUT_S = 10.0
STOP_GRACE_S: Final = 10.0
POLL_S: Final = 0.005
IDLE_SETTLE_S: Final = 1.0
MB: Final = 1024 * 1024
ACCEPT: Final = "application/json, text/event-stream"
LEGACY_VERSION: Final = "2025-11-25"

T = TypeVar("T")
Register = Literal["config", "api"]


class TargetUnavailable(Exception):
    """The target started (or not) but cannot serve the benchmark; the message says why."""


@dataclass(frozen=True, slots=True)
class Route:
    label: str  # as the report shows it, e.g. "gateway /servers/raw/mcp"
    url: str
    tool: str


@dataclass(slots=True)
class RunningTarget:
    name: str  # ceiling | gateway
    process: subprocess.Popen[bytes]
    routes: list[Route]
    stack: dict[str, Any]
    log: Path
    facts: dict[str, Any] = field(default_factory=dict)  # idle RSS, first call, ...
    scratch: Path | None = None  # removed on stop (the gateway's data dir)

    @property
    def pid(self) -> int:
        return self.process.pid

    def upstream_pids(self) -> list[int]:
        """Every process the target started (the upstream and anything it spawned)."""
        try:
            return [child.pid for child in psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def pin_upstreams(self, cpus: frozenset[int] | None) -> None:
        if cpus is None:
            return
        for pid in self.upstream_pids():
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).cpu_affinity(sorted(cpus))

    def rss_mb(self) -> float:
        rss: int = psutil.Process(self.pid).memory_info().rss
        return round(rss / MB, 1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (the target's own graceful stop), then SIGKILL to its whole group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # we made the group: start_new_session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE_S)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


# -- launching ------------------------------------------------------------------------------------


def _launch(
    command: list[str],
    log: Path,
    cpus: frozenset[int] | None,
    extra_path: Path | None,
    wrapper: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    if wrapper:
        command = [*wrapper, *command]
    if cpus is not None:
        command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]
    # The gateway serves only the upstream under test: no bundled Bindery beside it.
    env = dict(os.environ, ROUNDHOUSE_BINDERY="false")
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )


def _wait_for(what: str, check: Callable[[], T | None], process: subprocess.Popen[bytes]) -> T:
    # Read at call time: callcost.py raises it for targets started under valgrind.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        if process.poll() is not None:
            raise TargetUnavailable(f"it exited (code {process.returncode}) before {what}")
        time.sleep(POLL_S)
    raise TargetUnavailable(f"no {what} within {START_TIMEOUT_S:g} s")


def _log_match(log: Path, pattern: re.Pattern[str]) -> re.Match[str] | None:
    try:
        return pattern.search(log.read_text(errors="replace"))
    except OSError:
        return None


def _importable(module: str, extra_path: Path | None) -> bool:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([sys.executable, "-c", probe], env=env, check=False).returncode == 0


def start_ceiling(
    upstream: Upstream,
    *,
    log: Path,
    cpus: frozenset[int] | None,
    extra_path: Path | None,
    http: str,
    loop: str,
    pipe_size: int = 0,
    wrapper: list[str] | None = None,
) -> RunningTarget:
    command = [sys.executable, str(CEILING_SCRIPT), "--upstream", upstream.name]
    command += ["--port", "0", "--http", http, "--loop", loop, "--pipe-size", str(pipe_size)]
    process = _launch(command, log, cpus, extra_path, wrapper)
    ready_line = re.compile(r"^(\{.*\"port\".*\})$", re.MULTILINE)
    try:
        match = _wait_for("its ready line", lambda: _log_match(log, ready_line), process)
    except TargetUnavailable as exc:
        raise TargetUnavailable(f"the ceiling did not start: {exc}; see {log}") from None
    ready: dict[str, Any] = orjson.loads(match.group(1))
    url = f"http://127.0.0.1:{ready['port']}/mcp"
    target = RunningTarget(
        name="ceiling",
        process=process,
        routes=[Route("ceiling", url, "echo")],
        stack={
            "loop": ready["loop"],
            "http": ready["http"],
            "upstream_era": ready["era"],
            "pipe_size": ready.get("pipe_size", "default"),
        },
        log=log,
    )
    time.sleep(IDLE_SETTLE_S)
    target.facts["idle_rss_mb"] = target.rss_mb()
    return target


def start_gateway(
    upstream: Upstream,
    *,
    log: Path,
    cpus: frozenset[int] | None,
    extra_path: Path | None,
    client_era: ClientEra,
    upstream_cpus: frozenset[int] | None,
    wrapper: list[str] | None = None,
    register: Register = "config",
) -> RunningTarget:
    """Launch ``roundhouse up`` with the upstream, and time the first call.

    ``register="config"`` (the default) names the upstream in a config file given at launch,
    as a deployment does: the gateway starts it while it starts itself, and nothing but MCP is
    ever asked of it. first call = (launch -> first 200 carrying the echo) - (the upstream's
    start over a bare pipe, spawn -> handshake answered, least of 3, measured just before on
    the same CPUs), never less than the gateway's own launch -> listening.
    ``idle_rss_mb`` is taken 1 s after that call; ``idle_rss_mb_api`` after one more
    ``GET /api/servers`` (the management API is built on its first request).

    ``register="api"`` launches an empty gateway and registers the upstream with
    ``POST /api/servers``; first call = (launch -> first 200 to tools/call) - (upstream start ->
    ready), the upstream's part from its instance's ``started_at`` to the moment we saw it
    running. That leaves the gateway's own cost including building the management API.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="roundhouse-bench-"))
    command = [sys.executable, "-m", "roundhouse", "up", "--data-dir", str(data_dir)]
    command += ["--port", "0", "--log-level", "warning"]
    if register == "config":
        config = data_dir / "servers.json"
        transport = {"command": upstream.command()[0], "args": upstream.command()[1:]}
        config.write_bytes(orjson.dumps({"servers": {upstream.name: {"transport": transport}}}))
        command += ["--config", str(config)]
    # The upstream's own start over a bare pipe, on the CPUs its first run will have (the
    # gateway's: children inherit them until pin_upstreams).
    upstream_start_s = measure_start(upstream, cpus=cpus) if register == "config" else 0.0
    launched = time.perf_counter()
    launched_wall = time.time()
    process = _launch(command, log, cpus, extra_path, wrapper)
    stack = {
        "loop": "asyncio (asyncio.run)",
        "http": "HttpToolsProtocol" if _importable("httptools", extra_path) else "H11Protocol",
        "register": register,
    }
    target = RunningTarget("gateway", process, [], stack, log, scratch=data_dir)
    try:
        listening = re.compile(r"listening on (http://[^\s]+)")
        match = _wait_for("its 'listening on' line", lambda: _log_match(log, listening), process)
        base = match.group(1)
        routes = [
            Route(
                f"gateway /servers/{upstream.name}/mcp",
                f"{base}/servers/{upstream.name}/mcp",
                "echo",
            ),
            Route("gateway /mcp", f"{base}/mcp", f"{upstream.name}__echo"),
        ]
        first = routes[0]
        with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
            listening_s = _wait_for("GET /health", lambda: _health(client, launched), process)
            target.facts["listening_s"] = round(listening_s, 3)
            target.facts["idle_rss_mb_bare"] = target.rss_mb()
            if register == "config":
                _wait_for(
                    "a first successful tools/call",
                    lambda: _first_call(first, client_era),
                    process,
                )
                after_launch_s = time.perf_counter() - launched
                target.pin_upstreams(upstream_cpus)
                # The target excludes the upstream's start: take away what it takes over a
                # bare pipe (measured before the launch), but never below the gateway's own
                # start to listening, which no upstream can hide.
                first_call_s = max(listening_s, after_launch_s - upstream_start_s)
                target.facts.update(
                    first_call_after_launch_s=round(after_launch_s, 3),
                    upstream_start_s=round(upstream_start_s, 3),
                    first_call_s=round(first_call_s, 3),
                )
            else:
                _register_over_api(
                    client, upstream, target, (launched, launched_wall), first, client_era
                )
                target.pin_upstreams(upstream_cpus)
            time.sleep(IDLE_SETTLE_S)
            target.facts["idle_rss_mb"] = target.rss_mb()
            if register == "config":
                client.get("/api/servers").raise_for_status()
                time.sleep(IDLE_SETTLE_S)
                target.facts["idle_rss_mb_api"] = target.rss_mb()
        target.routes = routes
    except (TargetUnavailable, httpx.HTTPError) as exc:
        target.stop()
        raise TargetUnavailable(f"{exc} (log: {log})") from None
    return target


def _first_call(route: Route, era: ClientEra) -> bool | None:
    """One attempt at the first call: True once a tools/call is answered with the echo."""
    try:
        session = open_session(route.url, era)
        call_echo(route.url, era, route.tool, session)
    except (TargetUnavailable, httpx.HTTPError):
        return None
    return True


def _register_over_api(
    client: httpx.Client,
    upstream: Upstream,
    target: RunningTarget,
    launch: tuple[float, float],
    first: Route,
    era: ClientEra,
) -> None:
    launched, launched_wall = launch
    spec = {
        "slug": upstream.name,
        "transport": {"command": upstream.command()[0], "args": upstream.command()[1:]},
    }
    created = client.post("/api/servers", json=spec)
    if created.status_code != 201:
        raise TargetUnavailable(
            f"POST /api/servers answered {created.status_code}: {created.text[:300]}"
        )
    running = _wait_for(
        f"server {upstream.name!r} running",
        lambda: _running(client, upstream.name),
        target.process,
    )
    seen_running_wall = time.time()
    session = open_session(first.url, era)
    status = call_echo(first.url, era, first.tool, session, check=False)
    if status == 404:
        raise TargetUnavailable("the gateway has no MCP endpoint yet: 404")
    if status != 200:
        raise TargetUnavailable(f"tools/call through {first.url} answered {status}")
    first_call_s = time.perf_counter() - launched
    instance = (running.get("instances") or [{}])[0]
    started_at = _epoch(instance.get("started_at")) or launched_wall
    ready_at = _epoch(instance.get("ready_at")) or seen_running_wall
    upstream_start_s = max(0.0, ready_at - started_at)
    target.facts.update(
        first_call_after_launch_s=round(first_call_s, 3),
        upstream_start_s=round(upstream_start_s, 3),
        first_call_s=round(first_call_s - upstream_start_s, 3),
    )


def _health(client: httpx.Client, launched: float) -> float | None:
    try:
        ok = client.get("/health").status_code == 200
    except httpx.TransportError:
        return None
    return time.perf_counter() - launched if ok else None


def _running(client: httpx.Client, slug: str) -> dict[str, Any] | None:
    view: dict[str, Any] = client.get(f"/api/servers/{slug}").json()
    if view.get("state") == "failed":
        raise TargetUnavailable(f"server {slug!r} failed: {view}")
    return view if view.get("state") == "running" else None


def _epoch(iso: Any) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if isinstance(iso, str) else None


# -- the client side of one call ------------------------------------------------------------------


def client_headers(era: ClientEra, session: str | None, tool: str) -> dict[str, str]:
    """The headers ``load.lua`` sends, for the same era, session and tool."""
    headers = {"Content-Type": "application/json", "Accept": ACCEPT}
    if era == "modern":
        headers.update(
            {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "tools/call", "Mcp-Name": tool}
        )
    else:
        headers["MCP-Protocol-Version"] = LEGACY_VERSION
        if session:
            headers["Mcp-Session-Id"] = session
    return headers


def open_session(url: str, era: ClientEra) -> str | None:
    """A legacy client's ``initialize`` + ``notifications/initialized``; its session id, if any.

    Modern clients have no session. A target without sessions (the ceiling) answers without an
    ``Mcp-Session-Id``: then the run sends none.
    """
    if era == "modern":
        return None
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "roundhouse-bench", "version": "0"},
        },
    }
    headers = {"Content-Type": "application/json", "Accept": ACCEPT}
    answer = httpx.post(url, content=orjson.dumps(init), headers=headers, timeout=REQUEST_TIMEOUT_S)
    if answer.status_code != 200:
        return None  # the caller's probe call reports the status
    session: str | None = answer.headers.get("mcp-session-id")
    if session:
        headers["Mcp-Session-Id"] = session
    headers["MCP-Protocol-Version"] = LEGACY_VERSION
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    httpx.post(url, content=orjson.dumps(note), headers=headers, timeout=REQUEST_TIMEOUT_S)
    return session


def call_echo(
    url: str,
    era: ClientEra,
    tool: str,
    session: str | None,
    *,
    payload: int = 20,
    check: bool = True,
) -> int:
    """One ``tools/call`` as wrk sends it; returns the HTTP status.

    With ``check``, anything but a 200 carrying the echoed text raises TargetUnavailable.
    """
    message = echo_request(7, payload, era=era, tool=tool)
    headers = client_headers(era, session, tool)
    try:
        answer = httpx.post(
            url, content=orjson.dumps(message), headers=headers, timeout=REQUEST_TIMEOUT_S
        )
    except httpx.TransportError as exc:
        if check:
            raise TargetUnavailable(f"tools/call to {url} failed: {exc!r}") from None
        return 0
    if not check:
        return answer.status_code
    if answer.status_code != 200:
        raise TargetUnavailable(f"tools/call to {url} answered {answer.status_code}")
    body = _json_body(answer)
    content = (body.get("result") or {}).get("content") or [{}]
    if body.get("id") != 7 or content[0].get("text") != "x" * payload:
        raise TargetUnavailable(f"tools/call to {url} answered {str(body)[:300]}")
    return answer.status_code


def _json_body(answer: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer, whether sent as JSON or as the last ``data:`` of an SSE stream."""
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in answer.text.splitlines() if line.startswith("data:")]
        parsed: dict[str, Any] = orjson.loads(data[-1]) if data else {}
        return parsed
    result: dict[str, Any] = answer.json()
    return result
