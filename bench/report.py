"""Turn the runs into the issue's verdicts and a Markdown page.

Targets (issue 3, section 4), judged per pin mode, gateway route against the ceiling of the same
run: req/s >= 75 % of the ceiling's in every scenario; p99 at concurrency 1 within 0.5 ms; no
error and no stalled request at 64 KiB x 64; idle RSS <= 50 MB; first call <= 1 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

__all__ = ["ratios", "to_markdown"]

RPS_RATIO_TARGET: Final = 0.75
P99_C1_DELTA_MS: Final = 0.5
IDLE_RSS_MB: Final = 50.0
FIRST_CALL_S: Final = 1.0
BIG_PAYLOAD: Final = 64 * 1024
STALL_MS: Final = 5000.0
NOISY_CPU: Final = 20.0  # others' CPU % during a run above which it measures the neighbours


def _key(run: dict[str, Any]) -> tuple[str, str, int, int]:
    return (run["pin"], run["upstream"], run["payload"], run["concurrency"])


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per gateway run, against the ceiling run of the same pin and scenario."""
    ceilings = {_key(run): run for run in runs if run["target"] == "ceiling"}
    verdicts = []
    for run in runs:
        if run["target"] == "ceiling":
            continue
        ceiling = ceilings.get(_key(run))
        if ceiling is None:
            continue
        ratio = run["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
        verdict: dict[str, Any] = {
            "pin": run["pin"],
            "scenario": run["scenario"],
            "route": run["route"],
            "rps_ratio": round(ratio, 3),
            "rps_ok": ratio >= RPS_RATIO_TARGET,
            # The worse of the two runs' background load: above NOISY_CPU the verdict is noise.
            "others_cpu_percent": max(
                run.get("others_cpu_percent", 0.0), ceiling.get("others_cpu_percent", 0.0)
            ),
        }
        if run["concurrency"] == 1:
            delta = run["p99_ms"] - ceiling["p99_ms"]
            verdict["p99_c1_delta_ms"] = round(delta, 3)
            verdict["p99_ok"] = delta <= P99_C1_DELTA_MS
        if run["payload"] == BIG_PAYLOAD and run["concurrency"] == 64:
            clean = run["errors"] == 0 and run["timeouts"] == 0 and run["max_ms"] < STALL_MS
            verdict["no_error_no_stall_ok"] = clean
        verdicts.append(verdict)
    return verdicts


def _mark(ok: Any) -> str:
    return "" if ok is None else ("ok" if ok else "**MISS**")


def _table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def to_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    out = [
        "# Benchmark results",
        "",
        f"{meta['started']} · `{meta['command']}` · commit `{meta['commit']}`",
        "",
        f"{meta['cpus']} CPUs · Python {meta['python']} · uvicorn {meta['uvicorn']} · "
        f"{meta['wrk']} · wrk -t{meta['wrk_threads']} · {meta['duration_s']} s per run "
        f"after {meta['warmup_s']} s warm-up · load average before: {meta['loadavg_before']}",
        "",
    ]
    for target in result["targets"]:
        name = f"{target['target']} ({target['upstream']}, pin {target['pin']})"
        if "error" in target:
            out.append(f"- **{name}**: not measured: {target['error']}")
        else:
            skip = {"target", "upstream", "pin"}
            facts = ", ".join(f"{k} {v}" for k, v in target.items() if k not in skip)
            out.append(f"- **{name}**: {facts}")
    out.append("")
    if result.get("pipe"):
        out += ["## The upstreams over a bare pipe (no HTTP, no proxy)", ""]
        out += _table(
            ["pin", "upstream", "payload", "window", "req/s", "p50 ms", "p99 ms", "upstream CPU %"],
            [
                [
                    p["pin"],
                    p["upstream"],
                    p["payload_label"],
                    p["window"] or "all",
                    p["rps"],
                    "" if p["p50_us"] is None else round(p["p50_us"] / 1000, 3),
                    "" if p["p99_us"] is None else round(p["p99_us"] / 1000, 3),
                    p["upstream_cpu_percent"],
                ]
                for p in result["pipe"]
            ],
        )
        out.append("")
    out += ["## Runs", ""]
    out += _table(
        [
            "pin",
            "scenario",
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "RSS MB",
            "CPU %",
            "upstream CPU %",
            "wrk CPU %",
            "others CPU %",
        ],
        [
            [
                run["pin"],
                run["scenario"],
                run["route"],
                f"{run['rps']:,.0f}",
                f"{run['p50_ms']:.2f}",
                f"{run['p99_ms']:.2f}",
                f"{run['max_ms']:.1f}",
                run["errors"] + run["timeouts"],
                run["rss_mb"],
                run["cpu_percent"],
                run["upstream_cpu_percent"],
                run["wrk_cpu_percent"],
                run.get("others_cpu_percent", ""),
            ]
            for run in result["runs"]
        ],
    )
    out.append("")
    if result["ratios"]:
        out += ["## Gateway against the ceiling", ""]
        out += _table(
            [
                "pin",
                "scenario",
                "route",
                "req/s ratio (>= 75 %)",
                "p99 c1 delta ms",
                "64 KiB x 64",
                "others CPU % (noise)",
            ],
            [
                [
                    v["pin"],
                    v["scenario"],
                    v["route"],
                    f"{100 * v['rps_ratio']:.0f} % {_mark(v['rps_ok'])}",
                    f"{v['p99_c1_delta_ms']:+.3f} {_mark(v['p99_ok'])}"
                    if "p99_c1_delta_ms" in v
                    else "",
                    _mark(v.get("no_error_no_stall_ok")),
                    f"{v['others_cpu_percent']:.0f}"
                    + (" noisy" if v["others_cpu_percent"] > NOISY_CPU else ""),
                ]
                for v in result["ratios"]
            ],
        )
        out.append("")
    for gateway in result["targets"]:
        if gateway["target"] != "gateway" or "first_call_s" not in gateway:
            continue
        by_config = gateway.get("register", "api") == "config"
        how = (
            f"upstream from a config file, {gateway.get('first_call_after_launch_s')} s with its"
            f" start, which takes {gateway.get('upstream_start_s')} s over a bare pipe"
            if by_config
            else "upstream registered over REST, its start excluded"
        )
        api_rss = (
            f" ({gateway['idle_rss_mb_api']} MB once the REST API has answered)"
            if "idle_rss_mb_api" in gateway
            else ""
        )
        out.append(
            f"Gateway ({gateway['upstream']}, pin {gateway['pin']}): idle RSS "
            f"{gateway['idle_rss_mb']} MB{api_rss} (target <= {IDLE_RSS_MB:g}) "
            f"{_mark(gateway['idle_rss_mb'] <= IDLE_RSS_MB)}; first call "
            f"{gateway['first_call_s']} s after launch, {how} "
            f"(target <= {FIRST_CALL_S:g}) {_mark(gateway['first_call_s'] <= FIRST_CALL_S)}."
        )
        out.append("")
    return "\n".join(out)
