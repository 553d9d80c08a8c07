"""Timeouts and Limits: values checked when made, and kept by the pooled client."""

from __future__ import annotations

from typing import Any

import pytest

from roundhouse.resilience import Limits, Timeouts
from roundhouse.upstream.pooled import PooledHttpClient


def test_the_defaults_match_the_agreed_figures() -> None:
    assert Timeouts() == Timeouts(connect=5.0, read=30.0, write=30.0, pool=3.0)
    assert Limits() == Limits(
        max_connections=10, max_keepalive=5, max_request_bytes=1 << 20, max_response_bytes=10 << 20
    )


def test_total_bounds_every_phase_the_same() -> None:
    assert Timeouts.total(7.5) == Timeouts(connect=7.5, read=7.5, write=7.5, pool=7.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect": 0},
        {"read": -1.0},
        {"write": float("nan")},
        {"pool": float("inf")},
        {"read": "3"},
    ],
)
def test_a_timeout_that_is_not_a_positive_finite_number_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        Timeouts(**kwargs)


def test_total_refuses_what_the_constructor_refuses() -> None:
    with pytest.raises(ValueError):
        Timeouts.total(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_connections": 0},
        {"max_keepalive": -1},
        {"max_request_bytes": 1.5},
        {"max_response_bytes": True},
        {"max_connections": 2, "max_keepalive": 3},
    ],
)
def test_limits_that_make_no_sense_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)


async def test_the_pooled_client_keeps_the_values_it_was_given() -> None:
    # The pool is Roundhouse's own: its connection slots are max_connections; each phase's
    # bound is checked by behaviour in tests/integration/test_pooled_http.py.
    timeouts = Timeouts(connect=1.0, read=2.0, write=3.0, pool=4.0)
    limits = Limits(max_connections=7, max_keepalive=2)
    async with PooledHttpClient("http://127.0.0.1:9", timeouts=timeouts, limits=limits) as client:
        assert client.timeouts == timeouts
        assert client.limits == limits
        assert client._free == 7
