"""A circuit breaker: stop calling a backend that keeps failing, and find out when it is back.

    CLOSED ──(failure_threshold failures in a row)──> OPEN ──(recovery_timeout)──> HALF_OPEN
      ^                                                ^                              │
      └──────────── the probe succeeds ────────────────┼──── the probe fails ─────────┘
                                                       └ (the timer starts again)

While CLOSED every call goes and a success clears the count of failures. While OPEN every call
is refused at once with ``CircuitOpenError`` (saying how long until a probe may go), so a dead
backend costs callers nothing and gets no load while it recovers. HALF_OPEN lets exactly one
call through, the probe; its outcome decides. A probe that ends with neither answer (cancelled)
gives its place to the next caller.

OPEN turns into HALF_OPEN lazily, when someone looks (``state``, ``acquire``, ``snapshot``): no
timer task runs. Every change of state is reported, synchronously, to ``on_change(name, old,
new)``: that is how breaker changes become events. The breaker is for one event loop thread and
takes no locks: nothing in it awaits.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from roundhouse.errors import UpstreamError

__all__ = ["BreakerConfig", "BreakerState", "CircuitBreaker", "CircuitOpenError"]

logger = logging.getLogger(__name__)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(UpstreamError):
    """The breaker refused the call: nothing was sent to the backend."""

    http_status = 503
    # Refusing is the breaker's own doing, not news about the backend, and retrying at once
    # would only be refused again.
    counts_as_failure = False

    def __init__(self, breaker: str, retry_after: float) -> None:
        super().__init__(
            f"{breaker}: the circuit is open (the backend kept failing); "
            f"a new attempt is allowed in {retry_after:.1f} s",
            data={"breaker": breaker, "retry_after": retry_after},
        )
        self.breaker = breaker
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    """Consecutive failures that open the circuit."""
    recovery_timeout: float = 60.0
    """Seconds the circuit stays open before one probe is allowed."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {self.failure_threshold}")
        if not self.recovery_timeout >= 0:  # also refuses NaN
            raise ValueError(f"recovery_timeout must be >= 0, not {self.recovery_timeout}")


OnChange = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """One backend's breaker. ``acquire`` before a call, then one of ``record_success``,
    ``record_failure`` or ``release_probe`` after it (``guard`` does the pairing)."""

    __slots__ = (
        "_clock",
        "_failures",
        "_on_change",
        "_opened_at",
        "_probing",
        "_state",
        "config",
        "name",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig = BreakerConfig(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN:
            self._recover_if_due()
        return self._state

    def acquire(self) -> None:
        """Return when the call may go; raise ``CircuitOpenError`` when it may not."""
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.OPEN and not self._recover_if_due():
            raise CircuitOpenError(self.name, self._retry_after())
        if self._probing:
            raise CircuitOpenError(self.name, 0.0)
        self._probing = True

    def record_success(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._failures = 0
        elif self._state is BreakerState.HALF_OPEN:
            self._close()
        # OPEN: a call let through before the circuit opened; one late answer proves little.

    def record_failure(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.config.failure_threshold:
                self._open()
        elif self._state is BreakerState.HALF_OPEN:
            self._failures += 1
            self._open()
        # OPEN: a late failure of a call let through earlier; the timer keeps running.

    def release_probe(self) -> None:
        """The probe ended with no verdict (cancelled): the next caller may probe."""
        self._probing = False

    def probe_now(self) -> None:
        """OPEN -> HALF_OPEN at once, e.g. because the backend's health check passes again."""
        if self._state is BreakerState.OPEN:
            self._set(BreakerState.HALF_OPEN)

    def reset(self) -> None:
        """Back to CLOSED with every count cleared (an operator's decision)."""
        self._failures = 0
        self._opened_at = None
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {
            "name": self.name,
            "state": state.value,
            "failures": self._failures,
            "opened_at": self._opened_at,
            "retry_after": self._retry_after() if state is BreakerState.OPEN else 0.0,
        }

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """``acquire``; then success on a normal exit, failure on an ``Exception``, and the probe
        released on anything else (cancellation). The exception is re-raised."""
        self.acquire()
        try:
            yield
        except Exception:
            self.record_failure()
            raise
        except BaseException:
            self.release_probe()
            raise
        self.record_success()

    # --- internals ----------------------------------------------------------------------

    def _retry_after(self) -> float:
        assert self._opened_at is not None
        elapsed = self._clock() - self._opened_at
        return max(0.0, self.config.recovery_timeout - elapsed)

    def _recover_if_due(self) -> bool:
        assert self._opened_at is not None
        if self._clock() - self._opened_at < self.config.recovery_timeout:
            return False
        self._set(BreakerState.HALF_OPEN)
        return True

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probing = False
        self._set(BreakerState.OPEN)

    def _close(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False
        self._set(BreakerState.CLOSED)

    def _set(self, new: BreakerState) -> None:
        old = self._state
        if new is old:
            return
        self._state = new
        if new is BreakerState.HALF_OPEN:
            self._probing = False
        if self._on_change is not None:
            try:
                self._on_change(self.name, old, new)
            except Exception:
                # A broken listener must not turn into a failed call, nor undo the change.
                logger.exception("%s: breaker on_change listener failed", self.name)
