"""Resilience for calls to a backend: circuit breaker, retries with a budget, response cache,
timeouts and limits as values, and ``Guard`` composing them in one order.

Pure: no sockets, no processes (only ``asyncio.sleep``). Clocks and randomness are injectable,
so every test is exact. The HTTP client that applies ``Timeouts`` and ``Limits`` lives in
``roundhouse.upstream.pooled``.
"""

from __future__ import annotations

from roundhouse.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from roundhouse.resilience.cache import ResponseCache
from roundhouse.resilience.guard import Guard, counts_as_failure
from roundhouse.resilience.retry import RetryBudget, RetryPolicy, call_with_retries
from roundhouse.resilience.timeouts import Limits, Timeouts

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Guard",
    "Limits",
    "ResponseCache",
    "RetryBudget",
    "RetryPolicy",
    "Timeouts",
    "call_with_retries",
    "counts_as_failure",
]
