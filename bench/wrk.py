"""Run wrk with ``load.lua`` and read its result; sample the target's CPU and memory meanwhile.

wrk prints one ``BENCH {...}`` line from the script's ``done()`` hook (totals, latency
percentiles in microseconds, error counts); everything else it prints is kept for the log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psutil

__all__ = ["LOAD_SCRIPT", "Sampler", "WrkResult", "WrkRun", "run_wrk", "wrk_version"]

LOAD_SCRIPT: Final = Path(__file__).resolve().parent / "load.lua"
# A request unanswered this long counts as stalled (wrk's own --timeout).
STALL_TIMEOUT_S: Final = 5


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk invocation: where to aim and what the script should send."""

    url: str
    concurrency: int
    seconds: float
    payload: int
    protocol: str  # legacy | modern
    tool: str
    session_id: str | None = None
    protocol_version: str = "2025-11-25"
    threads: int = 1
    cpus: frozenset[int] | None = None  # taskset for wrk itself


@dataclass(slots=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    rpc_errors: int
    socket_errors: int  # connect + read + write
    timeouts: int
    wrk_cpu_percent: float
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.rpc_errors + self.socket_errors + self.timeouts


def wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def run_wrk(run: WrkRun, log: Path | None = None) -> WrkResult:
    threads = max(1, min(run.threads, run.concurrency))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{run.concurrency}",
        f"-d{max(1, round(run.seconds))}s",
        f"--timeout={STALL_TIMEOUT_S}s",
        "--latency",
        "-s",
        str(LOAD_SCRIPT),
        run.url,
    ]
    if run.cpus is not None:
        command = ["taskset", "-c", ",".join(map(str, sorted(run.cpus))), *command]
    env = dict(os.environ)
    env.update(
        WRK_PAYLOAD_BYTES=str(run.payload),
        WRK_PROTOCOL=run.protocol,
        WRK_SESSION_ID=run.session_id or "",
        WRK_PROTOCOL_VERSION=run.protocol_version,
        WRK_TOOL_NAME=run.tool,
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    started = time.perf_counter()
    assert process.stdout is not None
    out = process.stdout.read().decode(errors="replace")  # wrk ends itself after -d
    # Reap it ourselves: wait4 hands back wrk's own CPU time (taskset execs wrk, same pid).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if log is not None:
        with log.open("a") as handle:
            handle.write(f"$ {' '.join(command)}\n{out}\n")
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {process.returncode}):\n{out.strip()}")
    data: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
    seconds = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=data["non_2xx"],
        rpc_errors=data["rpc_errors"],
        socket_errors=data["connect_errors"] + data["read_errors"] + data["write_errors"],
        timeouts=data["timeouts"],
        wrk_cpu_percent=round(100 * (usage.ru_utime + usage.ru_stime) / elapsed, 1),
        raw=data,
    )


class Sampler:
    """CPU and RSS of some processes over a window: CPU from their times, RSS sampled (peak)."""

    def __init__(self, pids: Iterable[int], interval: float = 0.25) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu_start = 0.0
        self._wall_start = 0.0
        self.peak_rss = 0
        self.cpu_percent = 0.0

    def _cpu(self) -> float:
        total = 0.0
        for process in self._processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def _rss(self) -> int:
        total = 0
        for process in self._processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_rss = max(self.peak_rss, self._rss())

    def __enter__(self) -> Sampler:
        self._cpu_start = self._cpu()
        self._wall_start = time.perf_counter()
        self.peak_rss = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._wall_start
        self.peak_rss = max(self.peak_rss, self._rss())
        self.cpu_percent = round(100 * (self._cpu() - self._cpu_start) / wall, 1) if wall else 0.0
