"""The reading of the pool's figures (``/api/pool/health``): each threshold, just under and just
over, as a pure function."""

from __future__ import annotations

from typing import Any

from roundhouse.bindery.backend.monitor import analyze


def figures(**given: Any) -> dict[str, Any]:
    base = {
        "active": 0,
        "idle": 2,
        "max": 10,
        "min": 2,
        "acquisitions": 100,
        "failed_acquisitions": 0,
        "slow_queries": 0,
        "queries": 100,
        "slow_query_ms": 100.0,
    }
    base.update(given)
    return base


def test_idle_figures_are_healthy_with_no_recommendation() -> None:
    assert analyze(figures()) == {
        "status": "healthy",
        "utilization": 0.0,
        "error_rate": 0.0,
        "slow_query_rate": 0.0,
        "recommendations": [],
    }


def test_a_fresh_pool_with_no_traffic_divides_by_nothing() -> None:
    result = analyze(figures(acquisitions=0, queries=0))
    assert result["status"] == "healthy" and result["error_rate"] == 0.0


def test_utilization_at_80_percent_is_fine_and_over_it_is_a_warning() -> None:
    assert analyze(figures(active=8))["recommendations"] == []
    over = analyze(figures(active=9))
    assert over["status"] == "warning" and over["utilization"] == 0.9
    assert len(over["recommendations"]) == 1 and "pool size" in over["recommendations"][0]


def test_error_rate_at_10_percent_is_fine_and_over_it_is_critical() -> None:
    assert analyze(figures(acquisitions=90, failed_acquisitions=10))["status"] == "healthy"
    over = analyze(figures(acquisitions=89, failed_acquisitions=11))
    assert over["status"] == "critical" and over["error_rate"] == 0.11
    assert "failed" in over["recommendations"][0]


def test_slow_queries_at_10_percent_are_fine_and_over_it_a_warning() -> None:
    assert analyze(figures(slow_queries=10))["status"] == "healthy"
    over = analyze(figures(slow_queries=11))
    assert over["status"] == "warning" and over["slow_query_rate"] == 0.11
    assert "100 ms" in over["recommendations"][0]


def test_every_problem_gets_its_own_recommendation_and_the_worst_status_wins() -> None:
    result = analyze(figures(active=10, failed_acquisitions=50, slow_queries=90))
    assert result["status"] == "critical"
    assert len(result["recommendations"]) == 3
