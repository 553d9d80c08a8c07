"""Retries with exponential backoff and full jitter, held in check by a retry budget.

Only the caller knows whether an operation may run twice, so retrying is the caller's decision
(``Guard.run(idempotent=...)``); this module does the waiting and the counting.

Full jitter (the delay before retry *n* is uniform in ``[0, min(max_delay, base_delay * 2**n))``)
spreads the retries of many clients that failed together, instead of sending them back in one
wave. The budget caps retries at a fraction of the requests over a sliding window, so a backend
in trouble sees at most ``1 + ratio`` times its normal load, not ``attempts`` times.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["RetryBudget", "RetryPolicy", "call_with_retries"]

T = TypeVar("T")

# 2**62 times any sensible base delay is past any max_delay; it keeps the float math finite.
_MAX_EXPONENT: Final = 62
BUDGET_STEPS: Final = 10
"""The sliding window moves in this many steps: a request leaves it between ``window`` and
``window * (1 - 1/BUDGET_STEPS)`` seconds after it was made."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    """Total tries, the first one included."""
    base_delay: float = 0.05
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if not 0 <= self.base_delay <= self.max_delay:  # also refuses NaN
            raise ValueError(
                f"delays must satisfy 0 <= base_delay <= max_delay, "
                f"not base_delay={self.base_delay}, max_delay={self.max_delay}"
            )

    def delay(self, retry_number: int, rand: float) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry), ``rand`` in
        [0, 1): full jitter over the exponential ceiling."""
        if retry_number < 0:
            raise ValueError(f"retry_number must be >= 0, not {retry_number}")
        if not 0.0 <= rand < 1.0:
            raise ValueError(f"rand must be in [0, 1), not {rand}")
        ceiling = self.base_delay * (1 << min(retry_number, _MAX_EXPONENT))
        return rand * min(self.max_delay, ceiling)


class RetryBudget:
    """Retries may not exceed ``ratio`` of requests over a sliding window, with a floor of
    ``min_retries`` per window so a quiet client can still retry: counted over the window,
    ``retries <= max(min_retries, ratio * requests)`` holds at all times.

    Counts live in ``BUDGET_STEPS`` buckets of ``window / BUDGET_STEPS`` seconds each, so the
    memory is fixed however many requests pass.
    """

    __slots__ = (
        "_clock",
        "_current",
        "_requests",
        "_retries",
        "_step",
        "_total_requests",
        "_total_retries",
        "min_retries",
        "ratio",
        "window",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        *,
        window: float = 10.0,
        min_retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError(f"ratio must be within [0, 1], not {ratio}")
        if not 0 < window < float("inf"):
            raise ValueError(f"window must be a positive number of seconds, not {window}")
        if min_retries < 0:
            raise ValueError(f"min_retries must be >= 0, not {min_retries}")
        self.ratio = ratio
        self.window = window
        self.min_retries = min_retries
        self._clock = clock
        self._step = window / BUDGET_STEPS
        self._requests = [0] * BUDGET_STEPS
        self._retries = [0] * BUDGET_STEPS
        self._current = int(clock() // self._step)
        self._total_requests = 0
        self._total_retries = 0

    def record_request(self) -> None:
        slot = self._advance()
        self._requests[slot] += 1
        self._total_requests += 1

    def try_spend(self) -> bool:
        """True, and one retry counted, when a retry fits the budget now."""
        slot = self._advance()
        if self._total_retries + 1 > max(self.min_retries, self.ratio * self._total_requests):
            return False
        self._retries[slot] += 1
        self._total_retries += 1
        return True

    def snapshot(self) -> dict[str, Any]:
        self._advance()
        return {
            "requests": self._total_requests,
            "retries": self._total_retries,
            "ratio": self.ratio,
            "window": self.window,
            "min_retries": self.min_retries,
        }

    def _advance(self) -> int:
        """Drop the buckets that left the window; the current bucket's slot."""
        now = int(self._clock() // self._step)
        current = self._current
        if now != current:
            if now < current:  # a clock that went back: keep counting in the current bucket
                return current % BUDGET_STEPS
            for index in range(max(current + 1, now - BUDGET_STEPS + 1), now + 1):
                slot = index % BUDGET_STEPS
                self._total_requests -= self._requests[slot]
                self._total_retries -= self._retries[slot]
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._current = now
        return now % BUDGET_STEPS


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    retryable: Callable[[BaseException], bool],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """``await fn()``, again after a jittered wait while it raises a ``retryable`` exception and
    both attempts and budget remain; then the last exception goes to the caller. Cancellation
    is never retried."""
    if budget is not None:
        budget.record_request()
    try:
        return await fn()
    except Exception as exc:
        failure = exc
    return await continue_retries(
        failure, fn, policy=policy, budget=budget, retryable=retryable, sleep=sleep, rand=rand
    )


async def continue_retries(
    failure: Exception,
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    retryable: Callable[[BaseException], bool],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """The retries after a first attempt that raised ``failure`` (its request already counted):
    split out so ``Guard`` can make the first attempt inline, where nearly every call ends."""
    retry_number = 0
    while True:
        if retry_number + 1 >= policy.attempts or not retryable(failure):
            raise failure
        if budget is not None and not budget.try_spend():
            raise failure
        await sleep(policy.delay(retry_number, rand()))
        retry_number += 1
        try:
            return await fn()
        except Exception as exc:
            failure = exc
