"""How fast is the upstream itself? Drive it over a bare pipe, no HTTP, no proxy.

    python bench/pipe.py [--upstream raw|sdk] [--payload N] [--requests N] [--window W]
                         [--pin-upstream CPU] [--pin-client CPU]

The child is met with the gateway's ``handshake()``; then a writer thread keeps ``window``
requests in flight (precomputed lines, ``window`` permits; 0 writes the whole run at once)
while the main thread reads answer lines. Window 1 is a ping-pong: its round trip is the
upstream's own latency floor. Window 0 shows the most the upstream can answer per second; a
proxy in front of it cannot beat that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any

import orjson
import psutil
from scenarios import UPSTREAMS, Upstream, echo_request

from roundhouse.protocol.eras import Handshake
from roundhouse.upstream.handshake import handshake
from roundhouse.upstream.stdio import StdioConnection

__all__ = ["PipeResult", "measure_pipe", "measure_start"]

HANDSHAKE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PipeResult:
    upstream: str
    payload: int
    window: int
    requests: int
    seconds: float
    rps: float
    p50_us: float | None  # round trips; only meaningful at window 1
    p99_us: float | None
    upstream_cpu_percent: float


class _HandshakePipe:
    """The child's pipes as a StdioConnection's reader and writer, for the handshake only.

    A line is read (in a thread) only while a request written through here awaits its answer,
    so once the handshake returns no thread is left blocked on stdout to steal a later line.
    """

    def __init__(self, stdout: IO[bytes], stdin: IO[bytes]) -> None:
        self._stdout = stdout
        self._stdin = stdin
        self._awaited = asyncio.Semaphore(0)

    async def read(self, n: int = -1) -> bytes:
        await self._awaited.acquire()
        return await asyncio.to_thread(self._stdout.readline)

    def write(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()
        if b'"id"' in data:
            self._awaited.release()

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self._stdin.closed


async def _meet(child: subprocess.Popen[bytes]) -> Handshake:
    assert child.stdin is not None and child.stdout is not None
    pipe = _HandshakePipe(child.stdout, child.stdin)
    conn = StdioConnection(pipe, pipe, name="pipe")
    reader = asyncio.create_task(conn.run())
    try:
        return await handshake(conn, timeout=HANDSHAKE_TIMEOUT)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def _end(child: subprocess.Popen[bytes]) -> None:
    """Close the child's stdin (its cue to exit), then wait; kill it if it does not go."""
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def measure_start(
    upstream: Upstream, *, cpus: frozenset[int] | None = None, tries: int = 3
) -> float:
    """Seconds from spawning the upstream to its answer to the handshake over a bare pipe (the
    gateway's own ``handshake()``): the least of ``tries``, the upstream's own start with no
    proxy in it. ``cpus``: run it there (as the gateway's children start: on the gateway's CPU).
    """
    command = upstream.command()
    if cpus is not None:
        command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            asyncio.run(_meet(child))
            best = min(best, time.perf_counter() - started)
        finally:
            _end(child)
    return best


def measure_pipe(
    upstream: Upstream,
    *,
    payload: int,
    requests: int,
    window: int,
    pin_upstream: int | None = None,
    pin_client: int | None = None,
) -> PipeResult:
    own_cpus = os.sched_getaffinity(0)
    if pin_client is not None:
        os.sched_setaffinity(0, {pin_client})
    try:
        return _measure(upstream, payload, requests, window, pin_upstream)
    finally:
        os.sched_setaffinity(0, own_cpus)


def _measure(
    upstream: Upstream, payload: int, requests: int, window: int, pin_upstream: int | None
) -> PipeResult:
    child = subprocess.Popen(
        upstream.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1 << 20
    )
    try:
        if pin_upstream is not None:
            os.sched_setaffinity(child.pid, {pin_upstream})
        shaken = asyncio.run(_meet(child))
        assert child.stdin is not None and child.stdout is not None
        lines = []
        for number in range(1, requests + 1):
            message = echo_request(number, payload, era="legacy")
            if shaken.era == "modern":
                message["params"] = shaken.stamp(message["params"])
            lines.append(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))
        permits = threading.Semaphore(max(window, 1))
        sent_at = [0.0] * (requests + 1)
        stdin = child.stdin

        def write_all() -> None:
            if window == 0:  # unbounded: the whole run in one write, the upstream never waits
                sent_at[1:] = [time.perf_counter()] * requests
                stdin.write(b"".join(lines))
                stdin.flush()
                return
            for number, line in enumerate(lines, start=1):
                permits.acquire()
                sent_at[number] = time.perf_counter()
                stdin.write(line)
                stdin.flush()

        process = psutil.Process(child.pid)
        cpu_before = process.cpu_times()
        started = time.perf_counter()
        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        round_trips: list[float] = []
        readline = child.stdout.readline
        for _ in range(requests):
            line = readline()
            now = time.perf_counter()
            if window:
                permits.release()
            answer_id = orjson.loads(line)["id"]
            round_trips.append(now - sent_at[answer_id])
        seconds = time.perf_counter() - started
        cpu_after = process.cpu_times()
        writer.join()
    finally:
        _end(child)
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    quantiles = statistics.quantiles(round_trips, n=100)
    return PipeResult(
        upstream=upstream.name,
        payload=payload,
        window=window,
        requests=requests,
        seconds=round(seconds, 3),
        rps=round(requests / seconds, 1),
        p50_us=round(quantiles[49] * 1e6, 1) if window == 1 else None,
        p99_us=round(quantiles[98] * 1e6, 1) if window == 1 else None,
        upstream_cpu_percent=round(100 * cpu / seconds, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", choices=sorted(UPSTREAMS), default="raw")
    parser.add_argument("--payload", type=int, default=20)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument(
        "--window", type=int, nargs="+", default=[1, 16, 64, 0], help="0: unbounded"
    )
    parser.add_argument("--pin-upstream", type=int, default=None)
    parser.add_argument("--pin-client", type=int, default=None)
    args = parser.parse_args()
    for window in args.window:
        result: Any = measure_pipe(
            UPSTREAMS[args.upstream],
            payload=args.payload,
            requests=args.requests,
            window=window,
            pin_upstream=args.pin_upstream,
            pin_client=args.pin_client,
        )
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
