"""The blocking Python API, with the original manager's method names, on real processes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

import roundhouse
from roundhouse.errors import InvalidInput, NotFound, RoundhouseError

from .conftest import fixture_path


def wait_running(manager: roundhouse.Manager, slug: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while manager.get_server_state(slug) != "running":
        assert time.monotonic() < deadline, manager.get_server(slug)
        time.sleep(0.05)


def test_the_blocking_manager_deploys_executes_scales_and_undeploys(tmp_path: Path):
    with roundhouse.Manager(data_dir=tmp_path / "data", port=0) as manager:
        config = {
            "name": "raw",
            "server_type": "test",
            "command": sys.executable,
            "args": [fixture_path("raw_server.py")],
            "priority": 10,
            "tags": ["test"],
        }
        manager.deploy_server("raw", json.dumps(config))
        wait_running(manager, "raw")
        answer = manager.execute(
            "raw",
            json.dumps(
                {"method": "tools/call", "params": {"name": "echo", "arguments": {"text": "ok"}}}
            ),
        )
        assert json.loads(answer)["content"][0]["text"] == "ok"
        (info,) = manager.list_servers()
        assert (info.id, info.name, info.server_type, info.priority) == ("raw", "raw", "test", 10)
        health = manager.get_health_status()
        assert (health.total_servers, health.healthy_servers) == (1, 1)
        manager.scale_server("raw", 2)
        manager.undeploy_server("raw")
        with pytest.raises(NotFound):
            manager.get_server_state("raw")


def test_the_blocking_manager_reports_bad_input_and_use_before_start(tmp_path: Path):
    manager = roundhouse.Manager(data_dir=tmp_path / "data", port=0)
    with pytest.raises(RoundhouseError, match="not started"):
        manager.list_servers()
    with manager:
        with pytest.raises(InvalidInput, match="not valid JSON"):
            manager.deploy_server("x", "{invalid json}")
        with pytest.raises(InvalidInput, match="transport"):
            manager.deploy_server("x", {"name": "no transport"})
        with pytest.raises(NotFound):
            manager.execute("non-existent", '{"method": "ping"}')
        with pytest.raises(InvalidInput):
            manager.execute("x", '["not", "a", "request"]')
        assert manager.list_servers() == []
    manager.stop()  # idempotent
