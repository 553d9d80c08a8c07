"""Requests per second through the Bindery MCP face over a bare pipe (no gateway).

    .venv/bin/python bench/bindery_face.py [--requests N]

Starts ``python -m roundhouse.bindery.face`` (which launches its backend on a fresh SQLite file),
writes N requests at once and reads every answer. Cases: ``ping`` (the loop itself),
``tools/list``, cached reads (``get_stats``, ``get_task``: the Guard's cache answers) and
``create_task`` (every call reaches the backend, so this is the backend's pace).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import orjson

Make = Callable[[int], dict[str, Any]]


def call(name: str, arguments: dict[str, Any]) -> Make:
    def make(i: int) -> dict[str, Any]:
        params = {"name": name, "arguments": arguments}
        return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}

    return make


def method(name: str) -> Make:
    return lambda i: {"jsonrpc": "2.0", "id": i, "method": name}


async def main(requests: int) -> None:
    data = tempfile.mkdtemp(prefix="bindery-face-bench-")
    env = {**os.environ, "BINDERY_DB": f"{data}/bindery.db", "BINDERY_PORT": "0"}
    face = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roundhouse.bindery.face",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        limit=1 << 24,
    )
    assert face.stdin is not None and face.stdout is not None

    async def run(label: str, make: Make, n: int) -> None:
        started = time.perf_counter()
        face.stdin.write(b"".join(orjson.dumps(make(i)) + b"\n" for i in range(n)))
        for _ in range(n):
            await face.stdout.readline()
        seconds = time.perf_counter() - started
        print(f"{label:24} {n / seconds:>10,.0f} req/s  ({n} in {seconds:.2f} s)")

    await run("first call (startup)", call("create_task", {"title": "t"}), 1)
    await run("ping", method("ping"), requests)
    await run("tools/list", method("tools/list"), requests // 4)
    await run("get_stats (cached)", call("get_stats", {}), requests)
    await run("get_task (cached)", call("get_task", {"task_id": 1}), requests)
    await run("create_task (backend)", call("create_task", {"title": "x"}), requests // 20)
    face.stdin.close()
    await face.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().requests))
