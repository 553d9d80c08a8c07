"""The gateway as a real process: kill -9 of it leaves no orphans and loses no write."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from roundhouse.store import Store

from .conftest import fixture_path
from .gateway import Gateway, alive, wait_all_dead

pytestmark = pytest.mark.slow


def spec(
    slug: str, *args: str, script: str = "raw_server.py", **extra: object
) -> dict[str, object]:
    return {
        "slug": slug,
        "transport": {"command": sys.executable, "args": [fixture_path(script), *args]},
        **extra,
    }


def grandchild_of(gateway: Gateway, slug: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = gateway.request("GET", f"/api/servers/{slug}/logs").json()["lines"]
        for entry in lines:
            match = re.search(r"grandchild pid (\d+)", entry["line"])
            if match:
                return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError("the fixture did not report its grandchild")


def test_kill_9_of_the_gateway_leaves_no_server_alive_and_the_next_start_converges(tmp_path: Path):
    data = tmp_path / "data"
    gateway = Gateway(data)
    try:
        for n in range(4):
            assert gateway.request("POST", "/api/servers", json=spec(f"s{n}")).status_code == 201
        stubborn = spec(
            "stubborn", "--ignore-sigterm", "--fork-grandchild", script="misbehaving_server.py"
        )
        assert gateway.request("POST", "/api/servers", json=stubborn).status_code == 201
        before = {}
        for slug in ["s0", "s1", "s2", "s3", "stubborn"]:
            (instance,) = gateway.wait_running(slug)
            before[slug] = instance
        pids = [i["pid"] for i in before.values()] + [grandchild_of(gateway, "stubborn")]
        assert all(alive(pid) for pid in pids)
    finally:
        gateway.kill()
    assert wait_all_dead(pids, timeout=5) == [], "servers outlived the gateway"

    again = Gateway(data)
    try:
        servers = again.request("GET", "/api/servers").json()
        assert sorted(s["slug"] for s in servers) == ["s0", "s1", "s2", "s3", "stubborn"]
        for slug, old in before.items():
            (instance,) = again.wait_running(slug)
            assert instance["id"] == old["id"], "the restart added an instance instead of reusing"
            assert instance["pid"] not in pids
        children = psutil.Process(again.process.pid).children(recursive=True)
        running = [p for p in children if any("raw_server.py" in part for part in p.cmdline())]
        assert len(running) == 4, "a server was started twice"
    finally:
        assert again.stop() == 0


def test_leftovers_of_a_run_whose_watchdog_died_too_are_cleaned_at_the_next_start(tmp_path: Path):
    data = tmp_path / "data"
    gateway = Gateway(data)
    try:
        stubborn = spec(
            "stubborn", "--ignore-sigterm", "--fork-grandchild", script="misbehaving_server.py"
        )
        assert gateway.request("POST", "/api/servers", json=stubborn).status_code == 201
        (instance,) = gateway.wait_running("stubborn")
        grandchild = grandchild_of(gateway, "stubborn")
        # Kill the watchdog first, then the gateway: only the parent-death signal fires, which
        # reaches the leader but not the grandchild it forked.
        for pid in gateway.watchdog_pids:
            os.kill(pid, signal.SIGKILL)
    finally:
        gateway.kill()
    assert wait_all_dead([instance["pid"]], timeout=5) == []
    assert alive(grandchild), "expected the grandchild to survive without the watchdog"
    again = Gateway(data)
    try:
        assert wait_all_dead([grandchild], timeout=5) == [], "the leftover was not cleaned"
        again.wait_running("stubborn")
    finally:
        again.stop()


def test_every_acknowledged_write_survives_a_kill_9_in_the_middle_of_1000(tmp_path: Path):
    data = tmp_path / "data"
    gateway = Gateway(data)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=gateway.url, timeout=10, trust_env=False) as client:
            for n in range(worker, 1000, 8):
                if stop.is_set():
                    return
                slug = f"w{n}"
                body = spec(slug, enabled=False, tags=[f"n{n}"])
                try:
                    response = client.post("/api/servers", json=body)
                except httpx.HTTPError:
                    return
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(slug)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    gateway.kill()
    stop.set()
    for thread in threads:
        thread.join(15)
    assert 400 <= len(acknowledged) < 1000, "the kill should land in the middle of the writes"

    async def check() -> tuple[set[str], str]:
        async with Store.connect(f"sqlite:///{data / 'registry.db'}") as store:
            return {s.slug for s in await store.list_servers()}, await store.integrity_check()

    stored, integrity = asyncio.run(check())
    assert integrity == "ok"
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes were lost"
    again = Gateway(data)
    try:
        assert len(again.request("GET", "/api/servers").json()) == len(stored)
    finally:
        again.stop()


def test_a_config_file_with_an_error_stops_the_gateway_from_starting_and_names_the_line(
    tmp_path: Path,
):
    config = tmp_path / "roundhouse.yaml"
    config.write_text(
        "servers:\n  good:\n    transport: {command: echo}\n  Bad_Slug:\n"
        "    transport: {command: echo}\n"
    )
    with pytest.raises(RuntimeError, match="line 4"):
        Gateway(tmp_path / "data", "--config", str(config))


def test_up_prints_where_the_api_is_and_stops_cleanly_on_sigterm(tmp_path: Path):
    gateway = Gateway(tmp_path / "data")
    try:
        health = gateway.request("GET", "/health").json()
        assert health["status"] == "ok"
        assert health["endpoints"]["api"].startswith(gateway.url)
        assert gateway.request("GET", "/openapi.json").status_code == 200
        assert gateway.request("POST", "/api/servers", json=spec("raw")).status_code == 201
        (instance,) = gateway.wait_running("raw")
    finally:
        code = gateway.stop()
    assert code == 0
    assert not alive(instance["pid"])


def test_a_second_gateway_on_the_same_data_dir_refuses_to_start(tmp_path: Path):
    first = Gateway(tmp_path / "data")
    try:
        with pytest.raises(RuntimeError, match="another Roundhouse gateway"):
            Gateway(tmp_path / "data")
        assert first.request("GET", "/health").status_code == 200
    finally:
        first.stop()
