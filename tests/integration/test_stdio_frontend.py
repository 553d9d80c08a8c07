"""``roundhouse stdio`` as a real process: a desktop client's one command that brings up the
servers, serves them on stdin/stdout, and takes them down when the client goes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp import Client, StdioServerParameters

from .conftest import fixture_path
from .gateway import alive, wait_all_dead

MODES = ["legacy", "2026-07-28"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


def write_config(tmp_path: Path) -> Path:
    """A Claude Desktop style file naming the two fixture servers."""
    config = tmp_path / "claude_desktop_config.json"
    servers = {
        "raw": {"command": sys.executable, "args": [fixture_path("raw_server.py")]},
        "sdk": {"command": sys.executable, "args": [fixture_path("sdk_server.py")]},
    }
    config.write_text(json.dumps({"mcpServers": servers, "globalShortcut": ""}))
    return config


def stdio_args(tmp_path: Path) -> list[str]:
    return [
        "-m",
        "roundhouse",
        "stdio",
        "--config",
        str(write_config(tmp_path)),
        "--data-dir",
        str(tmp_path / "data"),
    ]


def gateway_of(data_dir: Path) -> psutil.Process:
    """The stdio gateway the SDK client launched, found among this test's children."""
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "stdio" in cmdline and str(data_dir) in cmdline:
            return child
    raise AssertionError("no stdio gateway among the test's children")


def family(process: psutil.Process) -> list[int]:
    """The gateway, its watchdog and every server it started (with their children)."""
    return [process.pid, *(child.pid for child in process.children(recursive=True))]


class Wire:
    """The gateway on raw pipes, for what the SDK client never sends."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = (tmp_path / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *stdio_args(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.notes: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.process.stdin is not None
        line = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        """The next answer; notifications are kept aside. Every stdout line must be JSON-RPC."""
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "the gateway closed stdout"
            message = json.loads(line)
            assert message["jsonrpc"] == "2.0"
            if "id" in message:
                return message
            self.notes.append(message)

    def ask(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        answer = self.receive()
        assert answer["id"] == request_id
        return answer

    def handshake(self) -> None:
        assert "result" in self.ask(1, "initialize", INITIALIZE["params"])
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def close(self) -> int:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def wire(tmp_path: Path) -> Any:
    wire = Wire(tmp_path)
    yield wire
    wire.close()


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_client_uses_every_server_and_closing_it_stops_them_all(tmp_path, mode):
    params = StdioServerParameters(command=sys.executable, args=stdio_args(tmp_path))
    async with Client(params, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"raw__echo", "raw__add", "sdk__echo", "sdk__add"} <= names
        result = await client.call_tool("raw__echo", {"text": "through stdio"})
        assert result.content[0].text == "through stdio"
        result = await client.call_tool("sdk__echo", {"text": "to the sdk"})
        assert "to the sdk" in result.content[0].text
        result = await client.call_tool("sdk__add", {"a": 2, "b": 3})
        assert "5" in result.content[0].text
        prompts = (await client.list_prompts()).prompts
        assert [p.name for p in prompts] == ["sdk__greet"]
        got = await client.get_prompt("sdk__greet", {"name": "stdio"})
        assert got.messages
        resources = (await client.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["fixture://hello"]
        assert (await client.read_resource("fixture://hello")).contents
        gateway = gateway_of(tmp_path / "data")
        pids = family(gateway)
        assert len(pids) >= 4  # the gateway, its watchdog and two servers
    assert wait_all_dead(pids, timeout=5) == []


def test_end_of_input_stops_every_server_and_exits_0(wire):
    wire.handshake()
    tools = wire.ask(2, "tools/list")["result"]["tools"]
    assert {"raw__echo", "sdk__echo"} <= {tool["name"] for tool in tools}
    pids = family(psutil.Process(wire.process.pid))
    started = time.monotonic()
    assert wire.close() == 0
    assert time.monotonic() - started < 10
    assert wait_all_dead(pids, timeout=5) == []


def test_a_line_that_is_not_json_is_answered_with_a_parse_error_and_serving_goes_on(wire):
    wire.send(b"this is not json")
    assert wire.receive() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error: the line is not JSON"},
    }
    wire.handshake()
    wire.send(b"{broken")
    assert wire.receive()["error"]["code"] == -32700
    wire.send(b'[{"jsonrpc": "2.0", "id": 7, "method": "ping"}]')
    batch = wire.receive()
    assert (batch["id"], batch["error"]["code"]) == (None, -32600)
    wire.send(b"")  # a blank line is framing slack, not an error
    answer = wire.ask(3, "tools/call", {"name": "raw__add", "arguments": {"a": 1, "b": 2}})
    assert answer["result"]["content"][0]["text"] == "3"


def test_a_line_over_16_mib_fails_only_its_own_request(wire):
    wire.handshake()
    huge = "x" * (16 * 1024 * 1024 + 1)
    wire.send({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"big": huge}})
    answer = wire.receive()
    assert (answer["id"], answer["error"]["code"]) == (41, -32600)
    assert wire.ask(42, "ping")["result"] == {}


def test_requests_before_initialize_and_a_second_era_are_refused_with_the_sdks_errors(wire):
    assert wire.ask(1, "tools/list")["error"]["code"] == -32600  # not initialized: legacy
    wire.handshake()
    enveloped = {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    }
    assert wire.ask(2, "tools/list", enveloped)["error"]["code"] == -32600
    assert wire.ask(3, "ping")["result"] == {}


def test_a_cancelled_call_gets_no_answer_and_the_next_one_does(wire):
    wire.handshake()
    wire.ask(2, "tools/list")
    wire.send(
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "raw__sleep", "arguments": {"seconds": 30}},
        }
    )
    wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}})
    started = time.monotonic()
    answer = wire.ask(4, "tools/call", {"name": "sdk__echo", "arguments": {"text": "next"}})
    assert "next" in answer["result"]["content"][0]["text"]
    assert time.monotonic() - started < 5


def test_sigterm_stops_every_server_and_exits_0(wire):
    wire.handshake()
    wire.ask(2, "tools/list")
    pids = family(psutil.Process(wire.process.pid))
    wire.process.send_signal(signal.SIGTERM)
    assert wire.process.wait(15) == 0
    assert wait_all_dead(pids, timeout=5) == []


def test_kill_9_of_the_gateway_leaves_no_server_running(wire):
    wire.handshake()
    wire.ask(2, "tools/list")
    gateway = psutil.Process(wire.process.pid)
    servers = [pid for pid in family(gateway)[1:]]
    assert servers
    os.kill(gateway.pid, signal.SIGKILL)
    wire.process.wait(5)
    assert wait_all_dead(servers, timeout=5) == []


def test_the_client_is_answered_initialize_before_the_servers_are_up(wire):
    started = time.monotonic()
    wire.send(INITIALIZE)
    answer = wire.receive()
    elapsed = time.monotonic() - started
    assert answer["result"]["serverInfo"]["name"] == "roundhouse"
    assert answer["result"]["protocolVersion"] == "2025-11-25"
    # Generous for a loaded CI machine; the report gives the measured time.
    assert elapsed < 5, f"initialize took {elapsed:.2f}s"
    assert alive(wire.process.pid)
