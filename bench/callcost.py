"""What one ``tools/call`` costs a target, counted rather than timed: repeatable on a busy host.

    .venv/bin/python bench/callcost.py [--target ceiling|gateway|both] [--calls N]
                                       [--route servers|aggregate] [--era legacy|modern]
                                       [--payload BYTES] [--concurrency C]
                                       [--profile | --gc | --cache-sim] [--keep DIR]
                                       [--top K] [--src DIR]

Wall-clock rates on a shared 2-CPU machine move with the neighbours' load; the work a process
does per request does not. Each target (``ceiling.py``, ``roundhouse up``) is started in front
of the raw upstream as ``bench/run.py`` starts it, and N ``tools/call`` of ``echo`` go through
it over keep-alive sockets (``--concurrency`` of them, one request in flight on each) after a
warm-up. Three views, each over the measured calls only:

- default (callgrind): the target runs under ``valgrind --tool=callgrind --instr-atstart=no``;
  counting is switched on for the measured window (``callgrind_control -i on/off``) and the
  report is the target's instructions per call (the interpreter, uvicorn/httptools, asyncio,
  our code; the kernel excluded), less what the target does idle over a window as long (its
  timers and health checks: under valgrind the window lasts minutes). The same code path
  counts the same to within a few % from run to run, at any load. The upstream runs natively
  (valgrind does not follow children).
  ``--keep DIR`` keeps the dumps (``callgrind_annotate DIR/gateway.out.1``: C functions only).
- ``--profile``: the target runs natively with ``bench/profhook`` on its path; ``cProfile`` is on
  for the window, and the report is Python function calls per call and the functions that cost
  the most (tottime per call, calls per call; a coroutine counts once per resumption). Counts
  are exact; times are inflated by the profiler and indicative only.
- ``--cache-sim``: callgrind with its cache simulation on; also reports simulated L1
  instruction, L1 data and last-level misses per call (the same windows, idle subtracted).
  Where the ratio of CPU time between two targets exceeds their ratio of instructions, this
  says whether the difference is cache misses. About twice as slow.
- ``--gc``: the same hook without cProfile: every garbage collection of the window, by
  generation (per 1,000 calls, longest and total pause), and the objects the collector tracks.
  Run it at ``--concurrency 64``: calls in flight are what push the collector into full
  collections.

The difference gateway - ceiling is the gateway's own per-call work; the issue's target is the
gateway within ~40 µs of the ceiling per call at concurrency 1 (``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
import targets
from scenarios import UPSTREAMS, ClientEra, echo_request
from targets import Route, RunningTarget, client_headers, open_session, start_ceiling, start_gateway

HOOK_DIR: Final = Path(__file__).resolve().parent / "profhook"
#: Under valgrind a Python process runs ~50x slower: start-up and the first calls take minutes.
VALGRIND_START_TIMEOUT_S: Final = 900.0
VALGRIND_REQUEST_TIMEOUT_S: Final = 300.0
_TOTALS = re.compile(rb"^totals:\s+([\d ]+)$", re.MULTILINE)
_EVENTS = re.compile(rb"^events:\s+(.+)$", re.MULTILINE)


class Client:
    """``concurrency`` keep-alive HTTP/1.1 connections sending one prepared request each turn.

    Deliberately bare (no HTTP library): the client's own cost is not the subject, and it must
    not hold the target up.
    """

    def __init__(self, route: Route, era: ClientEra, session: str | None, payload: int, n: int):
        url = urlsplit(route.url)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        headers = client_headers(era, session, route.tool)
        body = orjson.dumps(echo_request(7, payload, era=era, tool=route.tool))
        head = f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.request = head.encode() + body
        self.socks = [socket.create_connection(self.address) for _ in range(n)]
        for sock in self.socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self, calls: int, timeout: float) -> None:
        """Send ``calls`` requests, each socket sending its next one when its answer is in."""
        selector = selectors.DefaultSelector()
        buffers = {sock: b"" for sock in self.socks}
        sent = done = 0
        for sock in self.socks:
            if sent < calls:
                sock.sendall(self.request)
                sent += 1
                selector.register(sock, selectors.EVENT_READ)
        while done < calls:
            ready = selector.select(timeout)
            if not ready:
                raise TimeoutError(f"no answer within {timeout:g} s ({done}/{calls} done)")
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("the target closed a connection")
                buffers[sock] += data
                while (answer := _one_response(buffers[sock])) is not None:
                    status, buffers[sock] = answer
                    if status != 200:
                        raise RuntimeError(f"the target answered {status}")
                    done += 1
                    if sent < calls:
                        sock.sendall(self.request)
                        sent += 1
        selector.close()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _one_response(buffer: bytes) -> tuple[int, bytes] | None:
    """(status, rest of the buffer) once a whole response is in, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].decode("latin-1")
    match = re.search(r"(?im)^content-length:\s*(\d+)", head)
    if match is not None:
        total = end + 4 + int(match.group(1))
        if len(buffer) < total:
            return None
    elif re.search(r"(?im)^transfer-encoding:\s*chunked", head):
        # A JSON body holds no raw CR/LF, so the last chunk's marker cannot occur inside it.
        last = buffer.find(b"\r\n0\r\n\r\n", end + 2)
        if last < 0:
            return None
        total = last + 7
    else:
        raise RuntimeError(f"an answer of unknown length: {head!r}")
    body = buffer[end + 4 : total]
    status = int(head.split(" ", 2)[1])
    if b'"error"' in body:
        raise RuntimeError(f"the target answered an error: {body[:300]!r}")
    return status, buffer[total:]


def start(
    name: str, route_kind: str, era: ClientEra, scratch: Path, wrapper: list[str], hook: bool
) -> tuple[RunningTarget, Route]:
    upstream = UPSTREAMS["raw"]
    extra_path = HOOK_DIR if hook else None
    log = scratch / f"{name}.log"
    if name == "ceiling":
        target = start_ceiling(
            upstream,
            log=log,
            cpus=None,
            extra_path=extra_path,
            http="auto",
            loop="asyncio",
            wrapper=wrapper,
        )
        return target, target.routes[0]
    target = start_gateway(
        upstream,
        log=log,
        cpus=None,
        extra_path=extra_path,
        client_era=era,
        upstream_cpus=None,
        wrapper=wrapper,
    )
    return target, target.routes[0 if route_kind == "servers" else 1]


def measure(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{name}.out"
    hooked = args.profile or args.gc
    if hooked:
        os.environ["ROUNDHOUSE_BENCH_PROFILE"] = str(out)
        os.environ["ROUNDHOUSE_BENCH_CPROFILE"] = "1" if args.profile else "0"
        wrapper: list[str] = []
    else:
        targets.START_TIMEOUT_S = VALGRIND_START_TIMEOUT_S
        targets.REQUEST_TIMEOUT_S = VALGRIND_REQUEST_TIMEOUT_S
        wrapper = ["valgrind", "-q", "--tool=callgrind", "--instr-atstart=no"]
        wrapper += [f"--callgrind-out-file={out}"]
        if args.cache_sim:
            wrapper.append("--cache-sim=yes")
    began = time.monotonic()
    try:
        target, route = start(name, args.route, args.era, scratch, wrapper, hooked)
    finally:
        os.environ.pop("ROUNDHOUSE_BENCH_PROFILE", None)
        os.environ.pop("ROUNDHOUSE_BENCH_CPROFILE", None)
    try:
        print(f"{name}: up in {time.monotonic() - began:.0f} s; {route.url}", file=sys.stderr)
        session = open_session(route.url, args.era)
        client = Client(route, args.era, session, args.payload, args.concurrency)
        timeout = VALGRIND_REQUEST_TIMEOUT_S
        client.run(args.warmup, timeout)
        if hooked:
            os.kill(target.pid, signal.SIGUSR1)
            time.sleep(0.2)  # the handler runs between bytecodes of an idle loop
        else:
            _callgrind(target.pid, "-i", "on")
        window = time.monotonic()
        client.run(args.calls, timeout)
        window = time.monotonic() - window
        if hooked:
            os.kill(target.pid, signal.SIGUSR2)
            _wait_file(out)
        else:
            _callgrind(target.pid, "-i", "off")
            _callgrind(target.pid, "-d")  # -> out.1: the calls
            # What the target does with no call at all (timers, health checks) over as long a
            # window: under valgrind a window lasts minutes, and that work is not the calls'.
            _callgrind(target.pid, "-i", "on")
            time.sleep(window)
            _callgrind(target.pid, "-i", "off")
            _callgrind(target.pid, "-d")  # -> out.2: idle
        client.close()
    finally:
        target.stop()
    if args.gc:
        return _gc_report(Path(f"{out}.gc.json"), args.calls)
    if args.profile:
        return _profile_report(out, args.calls, args.top)
    calls, idle = Path(f"{out}.1"), Path(f"{out}.2")
    _wait_file(idle)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        for path in (calls, idle):
            shutil.copy(path, args.keep / path.name)
    busy, quiet = _totals(calls), _totals(idle)
    result: dict[str, Any] = {
        "instructions_per_call": (busy.get("Ir", 0) - quiet.get("Ir", 0)) / args.calls,
        "idle_instructions_per_s": quiet.get("Ir", 0) / window,
        "window_s": window,
    }
    if args.cache_sim:
        # valgrind's simulated caches (its model of this CPU's L1 and last level): misses per
        # call, reads and writes together.
        def per_call(*events: str) -> float:
            return sum(busy.get(e, 0) - quiet.get(e, 0) for e in events) / args.calls

        result["misses_per_call"] = {
            "I1": round(per_call("I1mr"), 1),
            "D1": round(per_call("D1mr", "D1mw"), 1),
            "LL": round(per_call("ILmr", "DLmr", "DLmw"), 1),
        }
    return result


def _callgrind(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], check=True, capture_output=True)


def _wait_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size == size and size > 0:
            return
        size = path.stat().st_size if path.exists() else -1
        time.sleep(0.2)
    raise TimeoutError(f"no profile written to {path}")


def _totals(dump: Path) -> dict[str, int]:
    """The dump's totals by event name (Ir; with --cache-sim also I1mr, D1mr, DLmw, ...)."""
    raw = dump.read_bytes()
    events, totals = _EVENTS.search(raw), _TOTALS.search(raw)
    if events is None or totals is None:
        return {}
    names = events.group(1).decode().split()
    return dict(zip(names, map(int, totals.group(1).split()), strict=False))


def _profile_report(out: Path, calls: int, top: int) -> dict[str, Any]:
    stats = pstats.Stats(str(out))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total_calls = sum(entry[1] for entry in table.values())
    rows = []
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in table.items():
        where = f"{_short(filename)}:{line}({function})" if line else function
        rows.append((tottime / calls * 1e6, ncalls / calls, cumtime / calls * 1e6, where))
    rows.sort(reverse=True)
    return {
        "python_calls_per_call": total_calls / calls,
        "top": [
            {"tottime_us": round(t, 2), "calls": round(n, 2), "cumtime_us": round(c, 2), "at": w}
            for t, n, c, w in rows[:top]
        ],
    }


def _gc_report(out: Path, calls: int) -> dict[str, Any]:
    found = orjson.loads(out.read_bytes())
    collections = found["collections"]
    report: dict[str, Any] = {"gc_tracked_objects": found["tracked"]}
    for generation in (0, 1, 2):
        of_gen = [c for c in collections if c["generation"] == generation]
        pauses = [c["ms"] for c in of_gen]
        report[f"gen{generation}"] = {
            "collected_per_call": round(sum(c["collected"] for c in of_gen) / calls, 2),
            "per_1000_calls": round(len(pauses) * 1000 / calls, 2),
            "max_ms": round(max(pauses, default=0.0), 2),
            "total_ms": round(sum(pauses), 2),
        }
    return report


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["ceiling", "gateway", "both"], default="both")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--route", choices=["servers", "aggregate"], default="servers")
    parser.add_argument("--era", choices=["legacy", "modern"], default="legacy")
    parser.add_argument("--payload", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile instead of callgrind")
    parser.add_argument("--gc", action="store_true", help="garbage collections and their pauses")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="also simulated cache misses per call (callgrind --cache-sim=yes; slower)",
    )
    parser.add_argument(
        "--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)"
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="run the targets on another copy of the package, e.g. an older commit's: "
        "git archive COMMIT src | tar -x -C DIR, then --src DIR/src",
    )
    args = parser.parse_args()
    if not (args.profile or args.gc) and shutil.which("callgrind_control") is None:
        print("callcost: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.src is not None:
        # The targets inherit it (run.py's launcher copies the environment).
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    names = ["ceiling", "gateway"] if args.target == "both" else [args.target]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="roundhouse-callcost-") as tmp:
        for name in names:
            results[name] = measure(name, args, Path(tmp))
    what = (
        f"raw upstream, {args.payload} B, c{args.concurrency}, {args.calls} calls, "
        f"{args.era} client, gateway route {args.route}"
    )
    print(f"# {what}")
    if args.gc:
        for name, result in results.items():
            print(f"{name:8} {orjson.dumps(result).decode()}")
        return 0
    key = "python_calls_per_call" if args.profile else "instructions_per_call"
    for name, result in results.items():
        idle = ""
        if "idle_instructions_per_s" in result:
            idle = (
                f"  (idle work subtracted: {result['idle_instructions_per_s']:,.0f}/s"
                f" over {result['window_s']:.0f} s)"
            )
        print(f"{name:8} {key} {result[key]:,.0f}{idle}")
        if "misses_per_call" in result:
            print(f"{'':8} cache misses per call (simulated): {result['misses_per_call']}")
        for row in result.get("top", []):
            print(
                f"    {row['tottime_us']:8.2f} us {row['calls']:6.2f} calls "
                f"{row['cumtime_us']:9.2f} us cum  {row['at']}"
            )
    if len(results) == 2:
        extra = results["gateway"][key] - results["ceiling"][key]
        ratio = results["gateway"][key] / results["ceiling"][key]
        print(f"gateway - ceiling: {extra:,.0f} per call (x{ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
