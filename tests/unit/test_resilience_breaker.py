"""The circuit breaker: one test per transition, each driven by an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from roundhouse.errors import RoundhouseError
from roundhouse.resilience import BreakerConfig, BreakerState, CircuitBreaker, CircuitOpenError

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Changes(list[tuple[str, BreakerState, BreakerState]]):
    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.append((name, old, new))


def make(threshold: int = 5, timeout: float = 60.0) -> tuple[CircuitBreaker, Clock, Changes]:
    clock, changes = Clock(), Changes()
    breaker = CircuitBreaker(
        "backend", BreakerConfig(threshold, timeout), clock=clock, on_change=changes
    )
    return breaker, clock, changes


def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.failure_threshold):
        breaker.acquire()
        breaker.record_failure()
    assert breaker.state is OPEN


def test_the_defaults_are_five_failures_and_sixty_seconds() -> None:
    breaker = CircuitBreaker("b")
    assert breaker.config == BreakerConfig(failure_threshold=5, recovery_timeout=60.0)
    assert breaker.state is CLOSED
    assert breaker.name == "b"


def test_transition_closed_to_open_at_exactly_the_threshold() -> None:
    breaker, _, changes = make(threshold=5)
    for _ in range(4):
        breaker.acquire()
        breaker.record_failure()
    assert breaker.state is CLOSED
    assert changes == []
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state is OPEN
    assert changes == [("backend", CLOSED, OPEN)]


def test_a_success_in_between_resets_the_count_of_failures() -> None:
    breaker, _, _ = make(threshold=3)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    assert breaker.snapshot()["failures"] == 0
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is CLOSED
    breaker.record_failure()
    assert breaker.state is OPEN


def test_open_rejects_with_the_time_left_until_a_probe() -> None:
    breaker, clock, _ = make(timeout=60.0)
    open_it(breaker)
    clock.now += 15.0
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    error = caught.value
    assert error.breaker == "backend"
    assert error.retry_after == pytest.approx(45.0)
    assert isinstance(error, RoundhouseError)
    assert error.counts_as_failure is False
    assert error.to_jsonrpc()["data"] == {"breaker": "backend", "retry_after": 45.0}
    assert "45.0 s" in error.message


def test_transition_open_to_half_open_after_the_recovery_timeout() -> None:
    breaker, clock, changes = make(timeout=60.0)
    open_it(breaker)
    clock.now += 59.999
    assert breaker.state is OPEN
    clock.now += 0.001
    assert breaker.state is HALF_OPEN
    assert changes == [("backend", CLOSED, OPEN), ("backend", OPEN, HALF_OPEN)]


def test_acquire_itself_turns_open_into_half_open_and_becomes_the_probe() -> None:
    breaker, clock, changes = make(timeout=10.0)
    open_it(breaker)
    clock.now += 10.0
    breaker.acquire()  # no state read before: acquire notices the timeout itself
    assert changes[-1] == ("backend", OPEN, HALF_OPEN)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 0.0


def test_only_one_probe_passes_in_half_open() -> None:
    breaker, clock, _ = make()
    open_it(breaker)
    clock.now += 60.0
    breaker.acquire()
    for _ in range(10):
        with pytest.raises(CircuitOpenError):
            breaker.acquire()
    assert breaker.state is HALF_OPEN


def test_transition_half_open_to_closed_when_the_probe_succeeds() -> None:
    breaker, clock, changes = make()
    open_it(breaker)
    clock.now += 60.0
    breaker.acquire()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert changes[-1] == ("backend", HALF_OPEN, CLOSED)
    assert breaker.snapshot()["failures"] == 0
    for _ in range(3):
        breaker.acquire()  # everyone goes again


def test_transition_half_open_to_open_when_the_probe_fails_with_a_fresh_timer() -> None:
    breaker, clock, changes = make(timeout=60.0)
    open_it(breaker)
    clock.now += 100.0
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state is OPEN
    assert changes[-1] == ("backend", HALF_OPEN, OPEN)
    assert breaker.snapshot()["opened_at"] == clock.now
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == pytest.approx(60.0)
    clock.now += 59.0
    assert breaker.state is OPEN
    clock.now += 1.0
    assert breaker.state is HALF_OPEN


def test_a_cancelled_probe_releases_its_place_for_the_next_caller() -> None:
    breaker, clock, changes = make()
    open_it(breaker)
    clock.now += 60.0
    breaker.acquire()
    breaker.release_probe()
    assert breaker.state is HALF_OPEN
    breaker.acquire()  # the next probe
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert [c[2] for c in changes] == [OPEN, HALF_OPEN]


def test_probe_now_turns_open_into_half_open_at_once() -> None:
    breaker, _, changes = make()
    open_it(breaker)
    breaker.probe_now()
    assert breaker.state is HALF_OPEN
    assert changes[-1] == ("backend", OPEN, HALF_OPEN)
    breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


def test_probe_now_changes_nothing_unless_open() -> None:
    breaker, clock, changes = make()
    breaker.probe_now()
    assert breaker.state is CLOSED
    open_it(breaker)
    clock.now += 60.0
    breaker.acquire()
    breaker.probe_now()  # half-open with a probe in flight: stays so, the probe keeps its place
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert changes == [("backend", CLOSED, OPEN), ("backend", OPEN, HALF_OPEN)]


def test_reset_closes_from_open_and_clears_the_counts() -> None:
    breaker, _, changes = make()
    open_it(breaker)
    breaker.reset()
    assert breaker.state is CLOSED
    assert changes[-1] == ("backend", OPEN, CLOSED)
    assert breaker.snapshot() == {
        "name": "backend",
        "state": "closed",
        "failures": 0,
        "opened_at": None,
        "retry_after": 0.0,
    }
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is CLOSED  # the count started again from zero


def test_reset_closes_from_half_open_and_when_closed_reports_no_change() -> None:
    breaker, clock, changes = make()
    breaker.record_failure()
    breaker.reset()
    assert changes == []
    assert breaker.snapshot()["failures"] == 0
    open_it(breaker)
    clock.now += 60.0
    breaker.acquire()
    breaker.reset()
    assert changes[-1] == ("backend", HALF_OPEN, CLOSED)
    breaker.acquire()
    breaker.acquire()


def test_on_change_is_called_once_per_change_and_never_without_one() -> None:
    breaker, clock, changes = make(threshold=2, timeout=5.0)
    breaker.record_success()
    breaker.record_failure()
    assert changes == []
    breaker.record_failure()  # -> open
    breaker.record_failure()  # a late failure while open: no change, no new timer
    assert breaker.state is OPEN
    assert breaker.state is OPEN
    clock.now += 5.0
    assert breaker.state is HALF_OPEN
    assert breaker.state is HALF_OPEN
    breaker.acquire()
    breaker.record_failure()  # -> open
    breaker.probe_now()  # -> half-open
    breaker.acquire()
    breaker.record_success()  # -> closed
    breaker.record_success()
    breaker.reset()
    assert changes == [
        ("backend", CLOSED, OPEN),
        ("backend", OPEN, HALF_OPEN),
        ("backend", HALF_OPEN, OPEN),
        ("backend", OPEN, HALF_OPEN),
        ("backend", HALF_OPEN, CLOSED),
    ]


def test_on_change_sees_the_new_state_already_in_place() -> None:
    seen: list[BreakerState] = []
    breaker: CircuitBreaker

    def listener(name: str, old: BreakerState, new: BreakerState) -> None:
        seen.append(breaker.state)

    breaker = CircuitBreaker("b", BreakerConfig(1, 1.0), on_change=listener)
    breaker.record_failure()
    assert seen == [OPEN]


def test_a_listener_that_raises_neither_fails_the_call_nor_undoes_the_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def listener(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("listener broke")

    breaker = CircuitBreaker("b", BreakerConfig(1, 1.0), on_change=listener)
    breaker.record_failure()
    assert breaker.state is OPEN
    assert "on_change listener failed" in caplog.text


def test_a_late_success_while_open_does_not_close_the_circuit() -> None:
    breaker, _, _ = make()
    open_it(breaker)
    breaker.record_success()  # a call let through before the circuit opened
    assert breaker.state is OPEN


def test_snapshot_while_open_reports_when_and_how_long() -> None:
    breaker, clock, _ = make(threshold=2, timeout=30.0)
    breaker.record_failure()
    breaker.record_failure()
    opened = clock.now
    clock.now += 10.0
    assert breaker.snapshot() == {
        "name": "backend",
        "state": "open",
        "failures": 2,
        "opened_at": opened,
        "retry_after": pytest.approx(20.0),
    }
    clock.now += 20.0
    assert breaker.snapshot()["state"] == "half_open"
    assert breaker.snapshot()["retry_after"] == 0.0


@pytest.mark.parametrize(
    ("threshold", "timeout"), [(0, 1.0), (-1, 1.0), (1, -0.1), (1, float("nan"))]
)
def test_a_config_that_makes_no_sense_is_refused(threshold: int, timeout: float) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(threshold, timeout)


async def test_guard_records_success_failure_and_releases_on_cancel() -> None:
    breaker, clock, _ = make(threshold=2)
    async with breaker.guard():
        pass
    with pytest.raises(ValueError):
        async with breaker.guard():
            raise ValueError("backend said no")
    assert breaker.snapshot()["failures"] == 1
    async with breaker.guard():
        pass
    assert breaker.snapshot()["failures"] == 0
    open_it(breaker)
    clock.now += 60.0

    started = asyncio.Event()

    async def probe() -> None:
        async with breaker.guard():
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(probe())
    await started.wait()
    with pytest.raises(CircuitOpenError):
        async with breaker.guard():
            pass
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is HALF_OPEN
    async with breaker.guard():  # the place the cancelled probe held
        pass
    assert breaker.state is CLOSED


async def test_guard_refused_by_an_open_circuit_never_runs_the_body() -> None:
    breaker, _, _ = make(threshold=1)
    breaker.record_failure()
    ran = False
    with pytest.raises(CircuitOpenError):
        async with breaker.guard():
            ran = True
    assert not ran
    assert breaker.snapshot()["failures"] == 1
