"""What the pool's figures mean: a pure reading of :meth:`Pool.metrics` for ``/api/pool/health``.

Kept free of I/O so that each threshold is tested with plain numbers. A rate over its threshold
is a warning; callers being refused connections (the error rate) is critical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ERROR_RATE_LIMIT", "SLOW_QUERY_RATE_LIMIT", "UTILIZATION_LIMIT", "analyze"]

UTILIZATION_LIMIT = 0.80
ERROR_RATE_LIMIT = 0.10
SLOW_QUERY_RATE_LIMIT = 0.10


def _rate(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def analyze(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``{status, utilization, error_rate, slow_query_rate, recommendations}``."""
    utilization = _rate(metrics["active"], metrics["max"])
    attempts = metrics["acquisitions"] + metrics["failed_acquisitions"]
    error_rate = _rate(metrics["failed_acquisitions"], attempts)
    slow_rate = _rate(metrics["slow_queries"], metrics["queries"])
    recommendations: list[str] = []
    status = "healthy"
    if utilization > UTILIZATION_LIMIT:
        status = "warning"
        recommendations.append(
            f"pool is {utilization:.0%} used (over {UTILIZATION_LIMIT:.0%}): raise the pool "
            "size or lower the request concurrency"
        )
    if slow_rate > SLOW_QUERY_RATE_LIMIT:
        status = "warning"
        recommendations.append(
            f"{slow_rate:.0%} of queries took over {metrics['slow_query_ms']:g} ms (over "
            f"{SLOW_QUERY_RATE_LIMIT:.0%}): check the database's load, disk and indexes"
        )
    if error_rate > ERROR_RATE_LIMIT:
        status = "critical"
        recommendations.append(
            f"{error_rate:.0%} of connection requests failed (over {ERROR_RATE_LIMIT:.0%}): "
            "the database is unreachable or the pool is exhausted; check the database and "
            "raise the pool size or acquire timeout"
        )
    return {
        "status": status,
        "utilization": round(utilization, 4),
        "error_rate": round(error_rate, 4),
        "slow_query_rate": round(slow_rate, 4),
        "recommendations": recommendations,
    }
