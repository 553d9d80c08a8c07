"""Guard: cache -> retries (idempotent only) -> breaker around each attempt, and invalidation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roundhouse.errors import InvalidInput, NotFound, UpstreamError
from roundhouse.resilience import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Guard,
    ResponseCache,
    RetryBudget,
    RetryPolicy,
    counts_as_failure,
)

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Backend:
    """A hand-written fake backend: answers from ``value`` or raises the queued errors."""

    def __init__(self, value: Any = "answer", errors: list[BaseException] | None = None) -> None:
        self.value = value
        self.errors = list(errors or [])
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def make_guard(
    *, threshold: int = 5, cache: bool = True, budget: RetryBudget | None = None
) -> tuple[Guard, Clock]:
    clock = Clock()
    breaker = CircuitBreaker("backend", BreakerConfig(threshold, 60.0), clock=clock)
    guard = Guard(
        breaker,
        policy=NO_WAIT,
        budget=budget or RetryBudget(ratio=1.0, min_retries=100, clock=clock),
        cache=ResponseCache(clock=clock) if cache else None,
    )
    return guard, clock


async def read(guard: Guard, backend: Backend, **arguments: Any) -> Any:
    return await guard.run("get_task", arguments, backend, idempotent=True, mutation=False)


async def write(guard: Guard, backend: Backend, *, idempotent: bool = False) -> Any:
    return await guard.run("update_task", {}, backend, idempotent=idempotent, mutation=True)


# --- the cache in front -------------------------------------------------------------------------


async def test_a_read_is_answered_from_the_cache_the_second_time() -> None:
    guard, _ = make_guard()
    backend = Backend({"id": 1})
    assert await read(guard, backend, task_id=1) == {"id": 1}
    assert await read(guard, backend, task_id=1) == {"id": 1}
    assert backend.calls == 1
    assert guard.snapshot()["cache"]["hits"] == 1


async def test_a_cache_hit_skips_the_breaker_and_the_budget() -> None:
    guard, _ = make_guard(threshold=1)
    await read(guard, Backend("cached"), task_id=1)
    guard.breaker.record_failure()
    assert guard.breaker.state is BreakerState.OPEN
    assert await read(guard, Backend("unused"), task_id=1) == "cached"
    assert guard.budget is not None
    assert guard.budget.snapshot()["requests"] == 1
    with pytest.raises(CircuitOpenError):
        await read(guard, Backend(), task_id=2)


async def test_a_mutation_never_reads_the_cache_and_empties_it_on_success() -> None:
    guard, _ = make_guard()
    reader = Backend("v1")
    await read(guard, reader, task_id=1)
    writer = Backend("written")
    assert await guard.run("get_task", {"task_id": 1}, writer, idempotent=False, mutation=True)
    assert writer.calls == 1
    assert guard.cache is not None
    assert len(guard.cache) == 0
    reader.value = "v2"
    assert await read(guard, reader, task_id=1) == "v2"


async def test_a_mutation_that_failed_after_it_was_sent_still_empties_the_cache() -> None:
    guard, _ = make_guard()
    await read(guard, Backend("v1"), task_id=1)
    with pytest.raises(UpstreamError):
        await write(guard, Backend(errors=[UpstreamError("timed out after sending")]))
    assert guard.cache is not None
    assert len(guard.cache) == 0
    assert guard.cache.snapshot()["invalidations"] == 1


async def test_a_cancelled_mutation_still_empties_the_cache() -> None:
    guard, _ = make_guard()
    await read(guard, Backend("v1"), task_id=1)
    started = asyncio.Event()

    async def slow_write() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(
        guard.run("update_task", {}, slow_write, idempotent=False, mutation=True)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guard.cache is not None
    assert len(guard.cache) == 0


async def test_a_mutation_refused_by_the_open_breaker_leaves_the_cache_alone() -> None:
    guard, _ = make_guard(threshold=1)
    await read(guard, Backend("v1"), task_id=1)
    guard.breaker.record_failure()
    backend = Backend()
    with pytest.raises(CircuitOpenError):
        await write(guard, backend, idempotent=True)
    assert backend.calls == 0
    assert guard.cache is not None
    assert len(guard.cache) == 1


async def test_a_read_that_raced_a_write_does_not_store_what_it_read() -> None:
    guard, _ = make_guard()
    read_started, write_done = asyncio.Event(), asyncio.Event()

    async def slow_read() -> str:
        read_started.set()
        await write_done.wait()
        return "read before the write"

    reading = asyncio.create_task(
        guard.run("get_task", {"task_id": 1}, slow_read, idempotent=True, mutation=False)
    )
    await read_started.wait()
    await write(guard, Backend("written"))
    write_done.set()
    assert await reading == "read before the write"  # the caller gets its answer...
    assert guard.cache is not None
    assert len(guard.cache) == 0  # ...but the cache does not keep it
    assert await read(guard, Backend("fresh"), task_id=1) == "fresh"


async def test_without_a_cache_every_read_reaches_the_backend() -> None:
    guard, _ = make_guard(cache=False)
    backend = Backend()
    await read(guard, backend, task_id=1)
    await read(guard, backend, task_id=1)
    await write(guard, backend)
    assert backend.calls == 3
    assert guard.snapshot()["cache"] is None


async def test_a_failed_read_stores_nothing() -> None:
    guard, _ = make_guard()
    with pytest.raises(NotFound):
        await read(guard, Backend(errors=[NotFound("no task 9")]), task_id=9)
    assert guard.cache is not None
    assert len(guard.cache) == 0


async def test_arguments_that_cannot_be_a_key_are_refused_before_anything_is_sent() -> None:
    guard, _ = make_guard()
    backend = Backend()
    with pytest.raises(InvalidInput):
        await guard.run("get_task", {1: "x"}, backend, idempotent=True, mutation=False)
    assert backend.calls == 0


# --- retries --------------------------------------------------------------------------------------


async def test_an_idempotent_call_is_retried_and_each_attempt_is_counted_by_the_breaker() -> None:
    guard, _ = make_guard()
    backend = Backend("ok", errors=[UpstreamError("1"), UpstreamError("2")])
    assert await read(guard, backend, task_id=1) == "ok"
    assert backend.calls == 3
    assert guard.breaker.snapshot()["failures"] == 0  # the success reset the count


async def test_a_non_idempotent_call_is_never_retried() -> None:
    guard, _ = make_guard()
    backend = Backend("ok", errors=[UpstreamError("down")])
    with pytest.raises(UpstreamError):
        await guard.run("create_task", {}, backend, idempotent=False, mutation=True)
    assert backend.calls == 1
    assert guard.breaker.snapshot()["failures"] == 1
    assert guard.budget.snapshot()["requests"] == 1  # counted as a request all the same


async def test_a_request_error_is_neither_retried_nor_a_breaker_failure() -> None:
    guard, _ = make_guard(threshold=1)
    backend = Backend(errors=[InvalidInput("title too long")])
    with pytest.raises(InvalidInput):
        await read(guard, backend, task_id=1)
    assert backend.calls == 1
    assert guard.breaker.state is BreakerState.CLOSED


async def test_retries_stop_at_the_breaker_once_it_opens() -> None:
    guard, _ = make_guard(threshold=2)
    backend = Backend(errors=[UpstreamError("1"), UpstreamError("2"), UpstreamError("3")])
    with pytest.raises(CircuitOpenError):
        await read(guard, backend, task_id=1)
    assert backend.calls == 2  # the third attempt was refused by the open circuit
    assert guard.breaker.state is BreakerState.OPEN


async def test_the_budget_caps_retries_across_calls() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_retries=0, clock=clock)
    guard = Guard(
        CircuitBreaker("b", BreakerConfig(1000, 60.0), clock=clock),
        policy=NO_WAIT,
        budget=budget,
    )
    backend = Backend(errors=[UpstreamError("down")] * 10_000)
    for _ in range(100):
        with pytest.raises(UpstreamError):
            await read(guard, backend)
    assert backend.calls == 120


async def test_a_guard_without_a_budget_gets_the_default_one() -> None:
    guard = Guard(CircuitBreaker("b"))
    assert isinstance(guard.budget, RetryBudget)
    assert guard.budget.ratio == 0.2


# --- the breaker around each attempt -------------------------------------------------------------


async def test_five_failed_single_attempts_open_the_circuit() -> None:
    guard, clock = make_guard()
    backend = Backend(errors=[UpstreamError("down")] * 5)
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await write(guard, backend)
    with pytest.raises(CircuitOpenError) as caught:
        await write(guard, backend)
    assert caught.value.retry_after == pytest.approx(60.0)
    clock.now += 60.0
    assert await write(guard, backend) == "answer"  # the probe
    assert guard.breaker.state is BreakerState.CLOSED


async def test_a_request_error_from_the_probe_lets_the_next_caller_probe() -> None:
    guard, clock = make_guard(threshold=1)
    guard.breaker.record_failure()
    clock.now += 60.0
    with pytest.raises(NotFound):
        await write(guard, Backend(errors=[NotFound("no such task")]))
    assert guard.breaker.state is BreakerState.HALF_OPEN
    await write(guard, Backend())
    assert guard.breaker.state is BreakerState.CLOSED


async def test_a_cancelled_probe_lets_the_next_caller_probe() -> None:
    guard, clock = make_guard(threshold=1)
    guard.breaker.record_failure()
    clock.now += 60.0
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(guard.run("op", {}, hang, idempotent=True, mutation=False))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await read(guard, Backend())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await read(guard, Backend("back")) == "back"
    assert guard.breaker.state is BreakerState.CLOSED


async def test_custom_predicates_decide_what_fails_and_what_is_retried() -> None:
    clock = Clock()
    guard = Guard(
        CircuitBreaker("b", BreakerConfig(1, 60.0), clock=clock),
        policy=NO_WAIT,
        retryable=lambda exc: False,
        is_failure=lambda exc: not isinstance(exc, KeyError),
    )
    backend = Backend(errors=[KeyError("x"), ValueError("y")])
    with pytest.raises(KeyError):
        await read(guard, backend)
    assert guard.breaker.state is BreakerState.CLOSED
    with pytest.raises(ValueError):
        await read(guard, backend)
    assert backend.calls == 2
    assert guard.breaker.state is BreakerState.OPEN


def test_the_default_predicate_follows_the_flag_on_the_error_class() -> None:
    assert counts_as_failure(UpstreamError("down"))
    assert counts_as_failure(OSError("reset"))
    assert not counts_as_failure(InvalidInput("bad"))
    assert not counts_as_failure(NotFound("gone"))
    assert not counts_as_failure(CircuitOpenError("b", 1.0))


async def test_snapshot_gathers_the_parts() -> None:
    guard, _ = make_guard()
    await read(guard, Backend(), task_id=1)
    snapshot = guard.snapshot()
    assert snapshot["breaker"]["state"] == "closed"
    assert snapshot["budget"]["requests"] == 1
    assert snapshot["cache"]["entries"] == 1
