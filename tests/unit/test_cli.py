"""The ``roundhouse`` command against a real HTTP server on 127.0.0.1.

The server is ``StandInGateway`` from ``test_client.py``: a stand-in that answers as the REST
API's contract says, until the real gateway can take its place (see that module's docstring).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from roundhouse.cli import app, human_duration
from tests.unit.test_client import TIME_SPEC, StandInGateway, free_port_url, instance, serving

runner = CliRunner()


@pytest.fixture
def gateway() -> StandInGateway:
    return StandInGateway()


@pytest.fixture
def url(gateway: StandInGateway) -> Iterator[str]:
    with serving(gateway) as served:
        yield served


def run(url: str, *args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, ["--url", url, *args], input=input, env={"COLUMNS": "120"})
    # An expected error is a message, never a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def sent(gateway: StandInGateway, method: str, path: str) -> Any:
    bodies = [body for m, p, body in gateway.requests if (m, p) == (method, path)]
    assert bodies, f"no {method} {path} among {gateway.requests}"
    return bodies[-1]


# ---------------------------------------------------------------------------------------- ls


def test_ls_prints_one_row_per_instance_and_one_for_a_server_without_instances(
    gateway: StandInGateway, url: str
) -> None:
    gateway.add(
        {**TIME_SPEC, "instances": 2},
        [
            instance("time", 0, pid=4242, uptime_seconds=192.4),
            instance("time", 1, state="backoff", health="unhealthy", pid=None, restart_count=3),
        ],
    )
    gateway.add({"slug": "remote", "transport": {"url": "https://x.test/mcp"}, "enabled": False})

    result = run(url, "ls")

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert rows[0] == [
        "SERVER", "INSTANCE", "STATE", "HEALTH", "PID", "PORT", "UPTIME", "RESTARTS"
    ]  # fmt: skip
    data = [row for row in rows if row[0] in ("time", "remote")]
    assert data == [
        ["time", "time-00000000", "running", "healthy", "4242", "-", "3m12s", "0"],
        ["time", "time-00000001", "backoff", "unhealthy", "-", "-", "3m12s", "3"],
        ["remote", "-", "pending", "unknown", "-", "-", "-", "-"],
    ]


def test_ls_json_prints_the_api_views(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC, [instance("time")])

    result = run(url, "ls", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == list(gateway.servers.values())


def test_ls_with_no_servers_says_how_to_add_one(url: str) -> None:
    result = run(url, "ls")
    assert result.exit_code == 0
    assert "roundhouse add" in result.stdout


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (192, "3m12s"), (7500, "2h05m"), (273600, "3d04h")],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


# --------------------------------------------------------------------------------------- add


def test_add_sends_a_stdio_spec_with_the_command_after_the_double_dash(
    gateway: StandInGateway, url: str
) -> None:
    result = run(
        url,
        "add", "time", "--name", "Time", "--env", "TZ=UTC", "--env", "EMPTY=",
        "--env", "EQ=a=b", "--cwd", "/srv", "--tag", "clock", "--instances", "2",
        "--", "uvx", "mcp-server-time", "--local-timezone", "UTC",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert sent(gateway, "POST", "/api/servers") == {
        "slug": "time",
        "name": "Time",
        "tags": ["clock"],
        "instances": 2,
        "transport": {
            "type": "stdio",
            "command": "uvx",
            "args": ["mcp-server-time", "--local-timezone", "UTC"],
            "env": {"TZ": "UTC", "EMPTY": "", "EQ": "a=b"},
            "cwd": "/srv",
        },
    }
    assert "added time" in result.stdout


def test_add_with_a_url_sends_an_http_spec_with_its_headers(
    gateway: StandInGateway, url: str
) -> None:
    result = run(
        url, "add", "remote", "--url", "https://mcp.example.com/mcp",
        "--header", "Authorization: Bearer abc", "-H", "X-Team:core",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert sent(gateway, "POST", "/api/servers") == {
        "slug": "remote",
        "transport": {
            "type": "http",
            "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": "Bearer abc", "X-Team": "core"},
        },
    }


def test_add_local_http_sends_a_local_http_spec_with_its_paths(
    gateway: StandInGateway, url: str
) -> None:
    result = run(
        url, "add", "web", "--local-http", "--health-path", "/healthz", "--mcp-path", "/rpc",
        "--", "python", "-m", "server", "--port", "{port}",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert sent(gateway, "POST", "/api/servers")["transport"] == {
        "type": "local-http",
        "command": "python",
        "args": ["-m", "server", "--port", "{port}"],
        "env": {},
        "cwd": None,
        "health_path": "/healthz",
        "mcp_path": "/rpc",
    }
    assert gateway.servers["web"]["transport"] == "local-http"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["add", "Bad_Slug", "--", "uvx", "x"], id="add-uppercase-slug"),
        pytest.param(["add", "-lead", "--", "uvx"], id="add-leading-dash"),
        pytest.param(["add", "a" * 41, "--", "uvx"], id="add-slug-too-long"),
        pytest.param(["rm", "--yes", "no/slash"], id="rm"),
        pytest.param(["show", "UP"], id="show"),
        pytest.param(["scale", "x y", "1"], id="scale-slug"),
        pytest.param(["scale", "time", "-1"], id="scale-negative"),
        pytest.param(["scale", "time", "two"], id="scale-not-an-int"),
        pytest.param(["logs", "time", "-n", "-5"], id="logs-negative-lines"),
        pytest.param(["add", "time", "--env", "NOEQUALS", "--", "uvx"], id="env-not-key-value"),
        pytest.param(["add", "time", "--env", "=v", "--", "uvx"], id="env-empty-key"),
        pytest.param(["add", "time", "--url", "https://x/m", "-H", "nocolon"], id="header"),
        pytest.param(["add", "time"], id="add-neither-command-nor-url"),
        pytest.param(["add", "time", "--url", "https://x/m", "--", "uvx"], id="add-both"),
        pytest.param(["add", "time", "--url", "ftp://x"], id="add-url-not-http"),
        pytest.param(["add", "time", "--url", "https://x/m", "--env", "A=b"], id="env-with-url"),
        pytest.param(["add", "time", "-H", "A:b", "--", "uvx"], id="header-with-command"),
        pytest.param(["add", "time", "--mcp-path", "/m", "--", "uvx"], id="path-no-local-http"),
    ],
)
def test_bad_arguments_are_usage_errors_before_any_request(
    gateway: StandInGateway, url: str, args: list[str]
) -> None:
    result = run(url, *args)

    assert result.exit_code == 2, result.output
    assert gateway.requests == []


def test_a_bad_url_option_is_a_usage_error() -> None:
    result = runner.invoke(app, ["--url", "localhost:8090", "ls"])
    assert result.exit_code == 2


# ------------------------------------------------------------------------------------ errors


def test_no_gateway_is_one_clear_line_and_exit_1() -> None:
    url = free_port_url()

    result = run(url, "ls")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: no Roundhouse gateway at {url} — start one with `roundhouse up`"
    )


def test_the_gateway_url_comes_from_the_environment(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)

    result = runner.invoke(app, ["ls", "--json"], env={"ROUNDHOUSE_URL": url})

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["slug"] == "time"


def test_an_unknown_server_shows_the_404_message(url: str) -> None:
    for args in (
        ["show", "ghost"],
        ["restart", "ghost"],
        ["logs", "ghost"],
        ["logs", "-f", "ghost"],
    ):
        result = run(url, *args)
        assert result.exit_code == 1, args
        assert result.stderr.strip() == "error: no server 'ghost'", args


def test_a_rejected_spec_shows_the_422_message_naming_the_field(url: str) -> None:
    # A local-http command without a {port} placeholder: only the gateway knows to refuse it.
    result = run(url, "add", "web", "--local-http", "--", "python", "-m", "server")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: transport.local-http: ")
    assert "{port} placeholder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_taken_slug_shows_the_409_message(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)
    result = run(url, "add", "time", "--", "uvx", "mcp-server-time")
    assert result.exit_code == 1
    assert "exists already" in result.stderr


# ---------------------------------------------------------------------- show, steer, rm, health


def test_show_prints_the_spec_state_instances_and_a_failed_instance_stderr(
    gateway: StandInGateway, url: str
) -> None:
    failed = instance(
        "time", 1, state="failed", health="unhealthy", pid=None, uptime_seconds=None,
        last_exit_code=127, last_error="exited at once", stderr_tail=["boom [1/3]", "bye"],
    )  # fmt: skip
    gateway.add({**TIME_SPEC, "tags": ["clock"]}, [instance("time"), failed])

    result = run(url, "show", "time")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "stdio uvx mcp-server-time" in out
    assert "clock" in out
    assert "time-00000000" in out and "time-00000001" in out
    assert "exit code 127, exited at once" in out
    assert "| boom [1/3]" in out  # stderr is shown as it is, not read as markup


def test_show_json_prints_the_view(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)
    result = run(url, "show", "time", "--json")
    assert json.loads(result.stdout) == gateway.servers["time"]


def test_start_stop_restart_and_scale_steer_the_server(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)

    commands = (["stop", "time"], ["start", "time"], ["restart", "time"], ["scale", "time", "3"])
    outputs = [run(url, *args) for args in commands]

    assert [r.exit_code for r in outputs] == [0, 0, 0, 0]
    assert [r.stdout.split()[0] for r in outputs] == ["stopped", "started", "restarted", "scaled"]
    assert "to 3 instances" in outputs[-1].stdout
    assert sent(gateway, "POST", "/api/servers/time/scale") == {"instances": 3}


def test_rm_asks_first_unless_yes(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)

    declined = run(url, "rm", "time", input="n\n")
    assert declined.exit_code == 1
    assert "time" in gateway.servers and gateway.requests == []

    removed = run(url, "rm", "time", "--yes")
    assert removed.exit_code == 0
    assert "time" not in gateway.servers


def test_health_prints_the_gateway_and_its_servers(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC, [instance("time")])

    result = run(url, "health")

    assert result.exit_code == 0, result.output
    assert f"gateway {url}: healthy, version 0.1.0, up 1h02m" in result.stdout
    assert "1 total, healthy 1, degraded 0, unhealthy 0; avg response 1.5 ms" in result.stdout


# -------------------------------------------------------------------------------------- logs


def test_logs_prints_the_last_lines(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)
    gateway.log_lines = [{"ts": 0.0, "instance": "time-0", "line": f"line {n}"} for n in range(5)]

    result = run(url, "logs", "time", "-n", "2")

    assert result.exit_code == 0
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
        "time-0 | line 3",
        "time-0 | line 4",
    ]


def test_logs_follow_prints_ndjson_lines_as_they_stream(gateway: StandInGateway, url: str) -> None:
    gateway.add(TIME_SPEC)
    gateway.log_lines = [{"ts": 0.0, "instance": "time-0", "line": "before"}]
    gateway.new_lines = [
        {"ts": 1.0, "instance": "time-1", "line": "after [b]"},
        {"ts": 2.0, "instance": "time-0", "line": "last"},
    ]

    result = run(url, "logs", "-f", "time")

    assert result.exit_code == 0, result.output
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
        "time-0 | before",
        "time-1 | after [b]",
        "time-0 | last",
    ]
    assert sent(gateway, "GET", "/api/servers/time/logs") is None


# ------------------------------------------------------------------------------------ import


def test_import_reads_a_claude_desktop_file_here_and_posts_the_specs(
    gateway: StandInGateway, url: str, tmp_path: Path
) -> None:
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
                    "Remote Tools": {"url": "https://mcp.example.com/mcp"},
                },
                "globalShortcut": "Ctrl+Space",
            }
        )
    )

    result = run(url, "import", str(config))

    assert result.exit_code == 0, result.output
    specs = sent(gateway, "POST", "/api/import")["servers"]
    assert [(s["slug"], s["transport"]["type"]) for s in specs] == [
        ("time", "stdio"),
        ("remote-tools", "http"),
    ]
    assert specs[0]["transport"]["env"] == {"TZ": "UTC"}  # sent in clear: the gateway stores it
    assert "imported 2: time, remote-tools" in result.stdout


def test_import_of_a_broken_file_names_it_and_sends_nothing(
    gateway: StandInGateway, url: str, tmp_path: Path
) -> None:
    config = tmp_path / "broken.json"
    config.write_text('{"mcpServers": {"time": {"command": ""}}}')
    missing = tmp_path / "missing.json"

    for path in (config, missing):
        result = run(url, "import", str(path))
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: ") and path.name in result.stderr
    assert gateway.requests == []


# --------------------------------------------------------------------------------- start-up


def test_up_with_a_broken_config_refuses_to_start_and_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "roundhouse.yaml"
    config.write_text("servers:\n  time:\n    transport: {command: uvx}\n    colour: red\n")

    result = runner.invoke(app, ["up", "--config", str(config), "--data-dir", str(tmp_path)])

    assert result.exit_code == 2, result.output
    assert "line 4" in result.stderr


def test_importing_the_cli_loads_no_heavy_modules() -> None:
    code = (
        "import sys, roundhouse.cli; "
        "heavy = {'fastapi', 'sqlalchemy', 'mcp', 'httpx', 'pydantic', 'uvicorn', 'rich'}; "
        "print(sorted({name.split('.')[0] for name in sys.modules} & heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for command in ("up", "add", "rm", "ls", "show", "start", "stop", "restart", "scale",
                    "logs", "import", "health"):  # fmt: skip
        assert command in result.stdout


@pytest.mark.parametrize(
    ("transport", "shown"),
    [
        ({"type": "http", "url": "https://h.example/mcp"}, "http https://h.example/mcp"),
        ({"type": "sse", "url": "https://h.example/sse"}, "sse https://h.example/sse"),
        ({"type": "stdio", "command": "uvx", "args": ["a b"]}, "stdio uvx 'a b'"),
    ],
)
def test_a_transport_is_summed_up_by_its_type_and_where_it_goes(
    transport: dict[str, Any], shown: str
) -> None:
    from roundhouse.cli.render import transport_summary

    assert transport_summary(transport) == shown
