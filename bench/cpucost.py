"""CPU time per request of the ceiling and the gateway under the same wrk load, interleaved.

    python bench/cpucost.py [--concurrency 64] [--rounds 3] [--seconds 4] [--payload 20]
                            [--route servers|aggregate]

The two targets run pinned as ``run.py`` pins them (the target on CPU 0; wrk and the upstream
on CPU 1), each in front of its own raw stdio upstream, with a legacy session. Each round runs
wrk against the ceiling, then the gateway, and reads the target process's user and system CPU
time over the run (psutil): CPU µs per request is what bounds a CPU-bound target's req/s, and it
moves far less than req/s when other work shares the host (the ratio of the two is the ratio the
benchmark judges, as the target would see it alone). Prints one line per run and, at the end,
each target's least CPU per request and highest req/s, and both ratios.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import psutil
from scenarios import UPSTREAMS
from targets import RunningTarget, open_session, start_ceiling, start_gateway
from wrk import WrkRun, run_wrk

TARGET_CPUS = frozenset({0})
LOAD_CPUS = frozenset({1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--payload", type=int, default=20)
    parser.add_argument("--route", choices=["servers", "aggregate"], default="servers")
    args = parser.parse_args()
    upstream = UPSTREAMS["raw"]
    logs = Path(tempfile.mkdtemp(prefix="roundhouse-cpucost-"))
    ceiling = start_ceiling(
        upstream,
        log=logs / "ceiling.log",
        cpus=TARGET_CPUS,
        extra_path=None,
        http="auto",
        loop="asyncio",
    )
    ceiling.pin_upstreams(LOAD_CPUS)
    try:
        gateway = start_gateway(
            upstream,
            log=logs / "gateway.log",
            cpus=TARGET_CPUS,
            extra_path=None,
            client_era="legacy",
            upstream_cpus=LOAD_CPUS,
        )
    except BaseException:
        ceiling.stop()
        raise
    targets: list[RunningTarget] = [ceiling, gateway]
    try:
        routes = {
            "ceiling": ceiling.routes[0],
            "gateway": gateway.routes[0 if args.route == "servers" else 1],
        }
        sessions = {name: open_session(route.url, "legacy") for name, route in routes.items()}
        results: dict[str, list[tuple[float, float]]] = {"ceiling": [], "gateway": []}
        for _ in range(args.rounds):
            for target in targets:
                route = routes[target.name]
                process = psutil.Process(target.pid)
                before = process.cpu_times()
                run = run_wrk(
                    WrkRun(
                        url=route.url,
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                        payload=args.payload,
                        protocol="legacy",
                        tool=route.tool,
                        session_id=sessions[target.name],
                        cpus=LOAD_CPUS,
                    )
                )
                after = process.cpu_times()
                user = (after.user - before.user) / run.requests * 1e6
                system = (after.system - before.system) / run.requests * 1e6
                results[target.name].append((run.rps, user + system))
                print(
                    f"{target.name:8} {run.rps:9,.0f} req/s  CPU {user + system:6.1f} µs/request"
                    f" (user {user:5.1f}, system {system:5.1f})  errors {run.errors}",
                    flush=True,
                )
    finally:
        for target in targets:
            target.stop()
    best = {name: max(rps for rps, _ in runs) for name, runs in results.items()}
    least = {name: min(cpu for _, cpu in runs) for name, runs in results.items()}
    for name in results:
        print(f"{name:8} best {best[name]:,.0f} req/s, least {least[name]:.1f} µs/request")
    print(
        f"gateway / ceiling: req/s {best['gateway'] / best['ceiling']:.1%}, "
        f"CPU per request {least['ceiling'] / least['gateway']:.1%} (ceiling's / gateway's)"
    )


if __name__ == "__main__":
    main()
