"""``Guard``: the breaker, retries and the response cache composed in the one order every client
uses.

    cache (reads) ──miss──> retries (idempotent) ──> breaker, around each attempt ──> fn()

- The cache comes first: a hit costs a dict lookup and touches neither the budget nor the
  breaker. Mutations never read it; they empty it when they are done.
- Retries wrap the breaker, so every attempt asks the breaker again: once a backend's failures
  open the circuit, the remaining attempts stop at ``CircuitOpenError`` (never retried by
  default) instead of piling on.
- The breaker counts an exception as a backend failure when ``is_failure`` says so; by default
  everything except errors flagged ``counts_as_failure = False`` (the backend answered and said
  the request was wrong: ``InvalidInput``, ``NotFound``, ``Conflict``…). Such an answer is
  neutral: it neither resets the count of failures nor settles a probe.

A mutation empties the cache when it succeeds, and also when it fails once an attempt was let
through (a timeout or a cut connection may have reached the backend); only a mutation the
breaker refused outright changes nothing. Invalidation moves the cache's generation on, so a
read that was in flight meanwhile does not store what it read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from roundhouse.resilience.breaker import CircuitBreaker
from roundhouse.resilience.cache import ResponseCache
from roundhouse.resilience.retry import RetryBudget, RetryPolicy, continue_retries

__all__ = ["Guard", "counts_as_failure"]

T = TypeVar("T")


def counts_as_failure(exc: BaseException) -> bool:
    """The default for both ``is_failure`` and ``retryable``: an exception says something is
    wrong with the backend unless its class is flagged ``counts_as_failure = False``."""
    return bool(getattr(exc, "counts_as_failure", True))


class Guard:
    """One backend's resilience: ``run`` every call to it through here."""

    __slots__ = ("breaker", "budget", "cache", "is_failure", "policy", "retryable")

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen: one shared default is safe
        budget: RetryBudget | None = None,
        cache: ResponseCache | None = None,
        retryable: Callable[[BaseException], bool] = counts_as_failure,
        is_failure: Callable[[BaseException], bool] = counts_as_failure,
    ) -> None:
        self.breaker = breaker
        self.policy = policy
        # Retries without a budget multiply load exactly when the backend can least take it.
        self.budget = budget if budget is not None else RetryBudget()
        self.cache = cache
        self.retryable = retryable
        self.is_failure = is_failure

    async def run(
        self,
        operation: str,
        arguments: Mapping[str, Any],
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        mutation: bool,
    ) -> T:
        cache = self.cache
        if mutation:
            return await self._mutate(fn, idempotent, cache)
        if cache is None:
            return await self._call(fn, idempotent)
        key = cache.key(operation, arguments)
        hit: T | None = cache._get(key)
        if hit is not None:
            return hit
        generation = cache.generation
        result = await self._call(fn, idempotent)
        if generation == cache.generation:
            cache._put(key, result)
        return result

    def snapshot(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker.snapshot(),
            "budget": self.budget.snapshot(),
            "cache": self.cache.snapshot() if self.cache is not None else None,
        }

    async def _mutate(
        self, fn: Callable[[], Awaitable[T]], idempotent: bool, cache: ResponseCache | None
    ) -> T:
        if cache is None:
            return await self._call(fn, idempotent)
        admitted = _Admitted()
        try:
            return await self._call(partial(admitted.watch, fn), idempotent)
        finally:
            if admitted.count:
                cache.invalidate_all()

    async def _call(self, fn: Callable[[], Awaitable[T]], idempotent: bool) -> T:
        # The first attempt is made here, inline: nearly every call ends with it, and the
        # retry machinery is entered only after a failure that may be retried.
        self.budget.record_request()
        try:
            return await self._attempt(fn)
        except Exception as exc:
            if not idempotent or self.policy.attempts < 2:
                raise
            failure = exc
        return await continue_retries(
            failure,
            partial(self._attempt, fn),
            policy=self.policy,
            budget=self.budget,
            retryable=self.retryable,
        )

    async def _attempt(self, fn: Callable[[], Awaitable[T]]) -> T:
        breaker = self.breaker
        breaker.acquire()
        try:
            result = await fn()
        except Exception as exc:
            if self.is_failure(exc):
                breaker.record_failure()
            else:
                breaker.release_probe()
            raise
        except BaseException:  # cancelled: no verdict on the backend
            breaker.release_probe()
            raise
        breaker.record_success()
        return result


class _Admitted:
    """Counts the attempts of a mutation the breaker let through (only those can have reached
    the backend)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def watch(self, fn: Callable[[], Awaitable[T]]) -> T:
        self.count += 1
        return await fn()
