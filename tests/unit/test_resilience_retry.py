"""Retries: full-jitter bounds, the budget's ratio and sliding window, what is never retried."""

from __future__ import annotations

import asyncio
import random

import pytest

from roundhouse.errors import InvalidInput, UpstreamError
from roundhouse.resilience import RetryBudget, RetryPolicy, call_with_retries
from roundhouse.resilience.retry import BUDGET_STEPS

ALMOST_ONE = 1.0 - 2**-53  # the largest value random.random() can return


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Flaky:
    """Fails with ``error`` ``failures`` times, then answers ``"ok"``."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or UpstreamError("backend down")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def always(exc: BaseException) -> bool:
    return True


# --- the policy's delays ---------------------------------------------------------------------


def test_the_default_policy_is_three_attempts() -> None:
    assert RetryPolicy() == RetryPolicy(attempts=3, base_delay=0.05, max_delay=2.0)


@pytest.mark.parametrize("retry_number", range(12))
def test_full_jitter_delay_spans_zero_to_just_below_the_exponential_ceiling(
    retry_number: int,
) -> None:
    policy = RetryPolicy(attempts=20, base_delay=0.05, max_delay=2.0)
    ceiling = min(2.0, 0.05 * 2**retry_number)
    assert policy.delay(retry_number, 0.0) == 0.0
    top = policy.delay(retry_number, ALMOST_ONE)
    assert top < ceiling
    assert top == pytest.approx(ceiling)
    assert policy.delay(retry_number, 0.5) == pytest.approx(ceiling / 2)


def test_delay_stays_within_bounds_for_any_random_draw() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=5.0)
    draws = random.Random(7)
    for _ in range(10_000):
        n = draws.randrange(0, 80)
        delay = policy.delay(n, draws.random())
        assert 0.0 <= delay < min(5.0, 0.1 * 2**n)


def test_the_ceiling_is_capped_even_for_absurd_retry_numbers() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=2.0)
    assert policy.delay(10_000, 0.5) == pytest.approx(1.0)


@pytest.mark.parametrize(("n", "rand"), [(-1, 0.5), (0, 1.0), (0, -0.1), (0, float("nan"))])
def test_delay_refuses_a_retry_number_or_draw_out_of_range(n: int, rand: float) -> None:
    with pytest.raises(ValueError):
        RetryPolicy().delay(n, rand)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"base_delay": -0.1},
        {"base_delay": 3.0, "max_delay": 2.0},
        {"max_delay": float("nan")},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- call_with_retries -----------------------------------------------------------------------


async def test_retries_until_success_sleeping_full_jitter_between() -> None:
    flaky, sleeps = Flaky(2), Sleeps()
    draws = iter([0.5, ALMOST_ONE])
    result = await call_with_retries(
        flaky,
        policy=RetryPolicy(attempts=3, base_delay=0.1, max_delay=10.0),
        budget=None,
        retryable=always,
        sleep=sleeps,
        rand=lambda: next(draws),
    )
    assert result == "ok"
    assert flaky.calls == 3
    assert sleeps[0] == pytest.approx(0.05)  # 0.5 * 0.1 * 2**0
    assert 0.2 * 0.999 < sleeps[1] < 0.2  # just below 0.1 * 2**1


async def test_gives_up_after_the_last_attempt_with_the_last_exception() -> None:
    flaky, sleeps = Flaky(10), Sleeps()
    with pytest.raises(UpstreamError, match="backend down"):
        await call_with_retries(
            flaky, policy=RetryPolicy(), budget=None, retryable=always, sleep=sleeps
        )
    assert flaky.calls == 3
    assert len(sleeps) == 2


async def test_a_non_retryable_error_is_raised_at_once() -> None:
    flaky, sleeps = Flaky(1, InvalidInput("bad title")), Sleeps()
    with pytest.raises(InvalidInput):
        await call_with_retries(
            flaky,
            policy=RetryPolicy(),
            budget=None,
            retryable=lambda exc: not isinstance(exc, InvalidInput),
            sleep=sleeps,
        )
    assert flaky.calls == 1
    assert sleeps == []


async def test_a_single_attempt_policy_never_retries() -> None:
    flaky = Flaky(1)
    with pytest.raises(UpstreamError):
        await call_with_retries(
            flaky, policy=RetryPolicy(attempts=1), budget=None, retryable=always, sleep=Sleeps()
        )
    assert flaky.calls == 1


async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await call_with_retries(
            cancelled, policy=RetryPolicy(), budget=None, retryable=always, sleep=Sleeps()
        )
    assert calls == 1


async def test_real_sleeps_are_used_by_default() -> None:
    flaky = Flaky(1)
    result = await call_with_retries(
        flaky,
        policy=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001),
        budget=None,
        retryable=always,
    )
    assert result == "ok"


async def test_one_request_is_recorded_per_call_and_one_retry_per_retry() -> None:
    budget = RetryBudget(ratio=0.5, min_retries=10, clock=Clock())
    await call_with_retries(
        Flaky(2), policy=RetryPolicy(), budget=budget, retryable=always, sleep=Sleeps()
    )
    assert budget.snapshot()["requests"] == 1
    assert budget.snapshot()["retries"] == 2


async def test_an_exhausted_budget_stops_the_retries_with_the_error() -> None:
    budget = RetryBudget(ratio=0.0, min_retries=1, clock=Clock())
    flaky = Flaky(10)
    with pytest.raises(UpstreamError):
        await call_with_retries(
            flaky, policy=RetryPolicy(attempts=5), budget=budget, retryable=always, sleep=Sleeps()
        )
    assert flaky.calls == 2  # the first try and the one retry the floor allows


# --- the budget ------------------------------------------------------------------------------


def test_the_budget_allows_min_retries_to_a_quiet_client() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=3, clock=Clock())
    budget.record_request()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_retries_never_exceed_the_ratio_of_requests_over_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3, clock=clock)
    spent = 0
    for i in range(1000):
        clock.now += 0.001  # all of them within one window
        budget.record_request()
        if budget.try_spend():
            spent += 1
        assert spent <= max(3, 0.2 * (i + 1))
    assert spent == 200
    assert budget.snapshot() == {
        "requests": 1000,
        "retries": 200,
        "ratio": 0.2,
        "window": 10.0,
        "min_retries": 3,
    }


async def test_under_total_failure_the_load_stays_within_the_ratio() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=3, clock=clock)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise UpstreamError("down")

    for _ in range(500):
        with pytest.raises(UpstreamError):
            await call_with_retries(
                down, policy=RetryPolicy(), budget=budget, retryable=always, sleep=Sleeps()
            )
    assert calls == 500 + 100  # 3 attempts each would have been 1500


def test_the_window_slides_old_requests_and_retries_out() -> None:
    clock = Clock(0.0)
    budget = RetryBudget(ratio=0.5, window=10.0, min_retries=0, clock=clock)
    step = 10.0 / BUDGET_STEPS
    for _ in range(10):
        budget.record_request()
    assert [budget.try_spend() for _ in range(6)] == [True] * 5 + [False]
    clock.now = 9 * step + step / 2  # still within the window
    assert budget.snapshot()["requests"] == 10
    assert not budget.try_spend()
    clock.now = 10 * step  # the first bucket left the window
    assert budget.snapshot()["requests"] == 0
    assert budget.snapshot()["retries"] == 0
    assert not budget.try_spend()  # no requests, no floor: nothing to spend
    budget.record_request()
    budget.record_request()
    assert budget.try_spend()
    assert not budget.try_spend()


def test_the_window_slides_bucket_by_bucket() -> None:
    clock = Clock(0.0)
    budget = RetryBudget(ratio=1.0, window=10.0, min_retries=0, clock=clock)
    for second in range(10):
        clock.now = float(second)
        budget.record_request()
    assert budget.snapshot()["requests"] == 10
    clock.now = 10.0
    assert budget.snapshot()["requests"] == 9
    clock.now = 14.5
    assert budget.snapshot()["requests"] == 5
    clock.now = 1000.0  # a long silence empties everything
    assert budget.snapshot()["requests"] == 0


def test_a_clock_that_goes_back_does_not_corrupt_the_counts() -> None:
    clock = Clock(100.0)
    budget = RetryBudget(ratio=1.0, window=10.0, min_retries=0, clock=clock)
    budget.record_request()
    clock.now = 50.0
    budget.record_request()
    assert budget.try_spend()
    assert budget.snapshot()["requests"] == 2
    clock.now = 200.0
    assert budget.snapshot() == {
        "requests": 0,
        "retries": 0,
        "ratio": 1.0,
        "window": 10.0,
        "min_retries": 0,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": -0.1},
        {"ratio": 1.5},
        {"ratio": float("nan")},
        {"window": 0.0},
        {"window": float("inf")},
        {"min_retries": -1},
    ],
)
def test_a_budget_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
