"""The benchmark: wrk against the ceiling and the gateway, in one run, as ratios.

    .venv/bin/python bench/run.py [--quick] [--target ceiling|gateway|both] [--out bench/results]
                                  [--pin split|none|both] [--upstream raw sdk] ...

For each upstream (raw, sdk), each target is started in front of it; for each of its routes,
payload (20 B, 64 KiB) and concurrency (1, 16, 64): a warm-up run, then the measured run (wrk
with ``load.lua``), sampling the target's CPU and RSS and its upstream's CPU. Ceiling and gateway
runs of one upstream follow each other, so they see the same machine. Before that, each upstream
is measured alone over a bare pipe (``pipe.py``): no proxy can beat that figure.

Pinning (2 CPUs): ``split`` puts the target on CPU 0 and wrk plus the upstream on CPU 1, so the
proxy under test has a core of its own; ``none`` lets the kernel place everything.

Writes ``OUT/latest.json`` and ``OUT/latest.md``, a timestamped copy of each under
``OUT/history/``, and the targets' and wrk's logs under ``OUT/logs/``. Exits 2 when a requested
target could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import psutil
import uvicorn
from pipe import measure_pipe
from report import ratios, to_markdown
from scenarios import (
    CONCURRENCIES,
    PAYLOADS,
    REPO,
    UPSTREAMS,
    ClientEra,
    Scenario,
    Upstream,
    payload_label,
    scenarios,
)
from targets import (
    RunningTarget,
    TargetUnavailable,
    call_echo,
    open_session,
    start_ceiling,
    start_gateway,
)
from wrk import Sampler, WrkResult, WrkRun, run_wrk, wrk_version

TARGET_CPUS: Final = frozenset({0})
LOAD_CPUS: Final = frozenset({1})  # wrk and the upstream
QUIET_WINDOW_S: Final = 1.0
# A ping-pong, and as many in flight as the most wrk connections. Not "all at once": the SDK
# server starts a task per request it reads, and 100,000 of them bury it.
PIPE_WINDOWS: Final = (1, 64)


def _pins(choice: str) -> list[str]:
    if choice == "both":
        return ["split", "none"]
    if choice == "split" and (os.cpu_count() or 1) < 2:
        print("one CPU only: no pinning", file=sys.stderr)
        return ["none"]
    return [choice]


def _loadavg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _start(
    name: str, upstream: Upstream, pin: str, args: argparse.Namespace, logs: Path
) -> RunningTarget:
    split = pin == "split"
    log = logs / f"{name}-{upstream.name}-{pin}.log"
    era: ClientEra = args.client_era or upstream.era
    if name == "ceiling":
        target = start_ceiling(
            upstream,
            log=log,
            cpus=TARGET_CPUS if split else None,
            extra_path=args.extra_path,
            http=args.http,
            loop=args.loop,
            pipe_size=args.ceiling_pipe_size,
        )
        target.pin_upstreams(LOAD_CPUS if split else None)
        return target
    return start_gateway(
        upstream,
        log=log,
        cpus=TARGET_CPUS if split else None,
        extra_path=args.extra_path,
        client_era=era,
        upstream_cpus=LOAD_CPUS if split else None,
        register=args.register,
    )


@dataclass
class _Slot:
    """One (target, route) of a scenario: its wrk run and every attempt measured so far."""

    target: RunningTarget
    route_index: int
    session: str | None
    run: WrkRun
    quiet_wait: float = 0.0
    loadavg: str | None = None
    attempts: list[tuple[WrkResult, Sampler, Sampler, float]] = field(default_factory=list)


def _slot(
    target: RunningTarget,
    scenario: Scenario,
    route_index: int,
    session: str | None,
    era: ClientEra,
    pin: str,
    args: argparse.Namespace,
) -> _Slot:
    route = target.routes[route_index]
    run = WrkRun(
        url=route.url,
        concurrency=scenario.concurrency,
        seconds=args.duration,
        payload=scenario.payload,
        protocol=era,
        tool=route.tool,
        session_id=session,
        threads=args.wrk_threads,
        cpus=LOAD_CPUS if pin == "split" else None,
    )
    return _Slot(target, route_index, session, run)


def _attempt(slot: _Slot, args: argparse.Namespace, wrk_log: Path, first: bool) -> None:
    """One measured wrk run of a slot (after waiting for quiet, and a warm-up the first time)."""
    quiet_wait = _wait_for_quiet(args.quiet_cpu, args.quiet_wait)
    if first:
        slot.quiet_wait = quiet_wait
        if args.warmup > 0:
            run_wrk(_replace_seconds(slot.run, args.warmup), wrk_log)
        slot.loadavg = _loadavg()
    upstream_pids = slot.target.upstream_pids()
    machine = _busy_cpu()
    with Sampler([slot.target.pid]) as own, Sampler(upstream_pids) as upstream_side:
        attempt = run_wrk(slot.run, wrk_log)
    machine_percent = 100 * (_busy_cpu() - machine) / attempt.seconds
    slot.attempts.append((attempt, own, upstream_side, machine_percent))


def _record(slot: _Slot, scenario: Scenario, era: ClientEra, pin: str) -> dict[str, Any]:
    """The fastest of a slot's attempts, as one row of the results."""
    result, own, upstream_side, machine_percent = max(slot.attempts, key=lambda a: a[0].rps)
    route = slot.target.routes[slot.route_index]
    # What the rest of the machine (other people's work) took meanwhile: noise, if high.
    others = machine_percent - own.cpu_percent - upstream_side.cpu_percent
    others -= result.wrk_cpu_percent
    # A target that stopped answering (a stalled pipe) fails the next call.
    healthy_after = call_echo(route.url, era, route.tool, slot.session, check=False) == 200
    record: dict[str, Any] = {
        "pin": pin,
        "scenario": scenario.key,
        "upstream": scenario.upstream.name,
        "payload": scenario.payload,
        "concurrency": scenario.concurrency,
        "target": slot.target.name,
        "route": route.label,
        "client_era": era,
        "rps": result.rps,
        "rps_attempts": [round(attempt[0].rps) for attempt in slot.attempts],
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        # The tail is judged like the rate: each target's best attempt. Taken from the fastest
        # attempt instead, one stall in it (a neighbour's burst) decided the p99 comparison.
        "p99_ms": min(attempt[0].p99_ms for attempt in slot.attempts),
        "p99_attempts": [attempt[0].p99_ms for attempt in slot.attempts],
        "max_ms": result.max_ms,
        "requests": result.requests,
        "errors": result.non_2xx + result.rpc_errors + result.socket_errors,
        "non_2xx": result.non_2xx,
        "rpc_errors": result.rpc_errors,
        "socket_errors": result.socket_errors,
        "timeouts": result.timeouts,
        "healthy_after": healthy_after,
        "rss_mb": round(own.peak_rss / 1024 / 1024, 1),
        "cpu_percent": own.cpu_percent,
        "upstream_cpu_percent": upstream_side.cpu_percent,
        "wrk_cpu_percent": result.wrk_cpu_percent,
        "others_cpu_percent": round(max(0.0, others), 1),
        "waited_for_quiet_s": slot.quiet_wait,
        "loadavg_before": slot.loadavg,
    }
    print(
        f"  {pin:5} {scenario.key:18} {route.label:28} {result.rps:>9,.0f} req/s  "
        f"p50 {result.p50_ms:7.2f} ms  p99 {record['p99_ms']:7.2f} ms  errors {result.errors}  "
        f"cpu {own.cpu_percent:5.1f} %  upstream {upstream_side.cpu_percent:5.1f} %  "
        f"wrk {result.wrk_cpu_percent:5.1f} %  others {max(0.0, others):5.1f} %",
        flush=True,
    )
    return record


def _busy_cpu() -> float:
    """Seconds of CPU the whole machine has spent busy, summed over its CPUs."""
    times = psutil.cpu_times()
    total: float = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle: float = times.idle + getattr(times, "iowait", 0.0)
    return total - idle


def _wait_for_quiet(threshold: float, longest: float) -> float:
    """Wait until the machine is nearly idle (others' test runs share these 2 CPUs).

    Returns how long it waited; after ``longest`` seconds it gives up and the run goes ahead
    (its ``others_cpu_percent`` then shows the noise).
    """
    started = time.monotonic()
    while time.monotonic() - started < longest:
        before = _busy_cpu()
        time.sleep(QUIET_WINDOW_S)
        if 100 * (_busy_cpu() - before) / QUIET_WINDOW_S <= threshold:
            break
    return round(time.monotonic() - started, 1)


def _replace_seconds(run: WrkRun, seconds: float) -> WrkRun:
    fields = asdict(run)
    fields["seconds"] = seconds
    return WrkRun(**fields)


def _pipe_runs(
    upstreams: list[Upstream], pins: list[str], quick: bool, quiet: Callable[[], float]
) -> list[dict[str, Any]]:
    rows = []
    for pin in pins:
        split = pin == "split"
        for upstream in upstreams:
            for payload in PAYLOADS:
                pins_kw = {
                    "pin_upstream": min(LOAD_CPUS) if split else None,
                    "pin_client": min(TARGET_CPUS) if split else None,
                }
                # Size each run to last a few seconds: the SDK server is ~50x slower than raw.
                probe = measure_pipe(upstream, payload=payload, requests=300, window=1, **pins_kw)
                requests = max(300, int(probe.rps * (1.5 if quick else 4.0)))
                for window in PIPE_WINDOWS:
                    quiet()
                    result = measure_pipe(
                        upstream, payload=payload, requests=requests, window=window, **pins_kw
                    )
                    row = asdict(result) | {"pin": pin, "payload_label": payload_label(payload)}
                    rows.append(row)
                    print(
                        f"  pipe {pin:5} {upstream.name}/{payload_label(payload):7} "
                        f"window {window:>2}: {result.rps:>9,.0f} req/s, "
                        f"upstream CPU {result.upstream_cpu_percent} %",
                        flush=True,
                    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up")
    parser.add_argument("--target", choices=["ceiling", "gateway", "both"], default="both")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--pin", choices=["split", "none", "both"], default="split")
    parser.add_argument("--upstream", nargs="+", choices=sorted(UPSTREAMS), default=["raw", "sdk"])
    parser.add_argument("--payload", nargs="+", type=int, default=list(PAYLOADS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCIES))
    parser.add_argument("--duration", type=float, default=None, help="seconds per run [10]")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up [2]")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--quiet-cpu",
        type=float,
        default=25.0,
        help="before each run, wait until the machine's busy CPU (%% of one CPU) is below this",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="longest wait for quiet, seconds [60]"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="N rounds over every target, in turn; each keeps its fastest run [1]",
    )
    parser.add_argument(
        "--client-era",
        choices=["legacy", "modern"],
        default=None,
        help="the era wrk speaks [the upstream's own: raw legacy, sdk modern]",
    )
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--ceiling-pipe-size", type=int, default=0, help="F_SETPIPE_SZ on the ceiling's pipes"
    )
    parser.add_argument(
        "--extra-path",
        type=Path,
        default=None,
        help="prepended to both targets' PYTHONPATH (e.g. a dir holding httptools and uvloop)",
    )
    parser.add_argument("--no-pipe", action="store_true", help="skip the bare-pipe upstream runs")
    parser.add_argument(
        "--register",
        choices=["config", "api"],
        default="config",
        help="how the gateway learns its upstream: a config file at launch, or POST /api/servers",
    )
    args = parser.parse_args()
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    names = ["ceiling", "gateway"] if args.target == "both" else [args.target]
    pins = _pins(args.pin)
    upstreams = [UPSTREAMS[name] for name in args.upstream]
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    wrk_log = logs / "wrk.log"
    wrk_log.write_text("")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta = {
        "started": started,
        "command": shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "wrk": wrk_version(),
        "wrk_threads": args.wrk_threads,
        "repeat": args.repeat,
        "quiet_cpu": args.quiet_cpu,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "pins": pins,
        "loadavg_before": _loadavg(),
    }
    print(f"load average {meta['loadavg_before']}; pins {pins}; targets {names}", flush=True)
    quiet = partial(_wait_for_quiet, args.quiet_cpu, args.quiet_wait)
    pipe_rows = [] if args.no_pipe else _pipe_runs(upstreams, pins, args.quick, quiet)

    runs: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    failed = False
    for pin in pins:
        for upstream in upstreams:
            era: ClientEra = args.client_era or upstream.era
            chosen = scenarios((upstream.name,), tuple(args.payload), tuple(args.concurrency))
            # Every target of this upstream runs at once (idle ones cost nothing) and the
            # scenarios interleave them, so a ceiling and a gateway run see the same machine.
            running: list[tuple[RunningTarget, dict[str, Any], list[str | None]]] = []
            for name in names:
                summary: dict[str, Any] = {"target": name, "upstream": upstream.name, "pin": pin}
                targets.append(summary)
                target: RunningTarget | None = None
                try:
                    target = _start(name, upstream, pin, args, logs)
                    print(f"{name} ({upstream.name}, pin {pin}): {target.stack} {target.facts}")
                    summary.update(target.stack, **target.facts)
                    sessions = [open_session(route.url, era) for route in target.routes]
                    for route, session in zip(target.routes, sessions, strict=True):
                        call_echo(route.url, era, route.tool, session)  # raises if wrong
                except TargetUnavailable as exc:
                    summary["error"] = str(exc)
                    print(f"{name} ({upstream.name}, pin {pin}): {exc}", file=sys.stderr)
                    failed = True
                    if target is not None:
                        target.stop()
                    continue
                running.append((target, summary, sessions))
            try:
                for scenario in chosen:
                    # --repeat N: N rounds, each measuring every target once, in turn, so the
                    # attempts of a ceiling and a gateway are spread over the same minutes (the
                    # host's speed drifts; back-to-back repeats of one target would not see
                    # the drift the other sees). Each keeps its fastest attempt.
                    slots = [
                        (_slot(target, scenario, index, session, era, pin, args), summary)
                        for target, summary, sessions in running
                        if "error" not in summary
                        for index, session in enumerate(sessions)
                    ]
                    for round_number in range(args.repeat):
                        for slot, summary in slots:
                            if "error" in summary:
                                continue
                            try:
                                _attempt(slot, args, wrk_log, first=round_number == 0)
                            except RuntimeError as exc:  # wrk failed: the target broke
                                summary["error"] = str(exc)
                                print(f"{slot.target.name}: {exc}", file=sys.stderr)
                                failed = True
                    for slot, summary in slots:
                        if slot.attempts and "error" not in summary:
                            runs.append(_record(slot, scenario, era, pin))
            finally:
                for target, _, _ in running:
                    target.stop()

    result = {
        "meta": meta,
        "pipe": pipe_rows,
        "targets": targets,
        "runs": runs,
        "ratios": ratios(runs),
    }
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(result, indent=2)
    markdown = to_markdown(result)
    history = out / "history"
    history.mkdir(exist_ok=True)
    for path in (out / "latest", history / stamp):
        path.with_suffix(".json").write_text(text)
        path.with_suffix(".md").write_text(markdown + "\n")
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
