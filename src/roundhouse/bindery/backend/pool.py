"""A small connection pool with the figures an operator needs, one for both backends.

Why not SQLAlchemy's pool: the backend runs no SQLAlchemy engine. On SQLite each operation runs
whole on plain ``sqlite3`` (no hop per statement as through aiosqlite), which measured several
times faster; on Postgres it speaks asyncpg directly. Both
want the same policy and the same figures, which this pool gives over any :class:`Connector`:

- at most ``max_size`` connections; ``min_size`` opened at start and kept warm;
- ``acquire`` waits at most ``acquire_timeout`` for a free slot, then fails (counted);
- a connection idle longer than ``idle_timeout`` or older than ``lifetime`` is closed when it
  is next handed out (the "pessimistic" check) or by the reaper, whichever comes first;
- a connection whose lease ended in an error is closed, never reused.

Figures (:meth:`Pool.metrics`): active and idle connections, acquisitions and failed ones, the
wait for a connection (mean and max), queries and those slower than ``slow_query_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from roundhouse.bindery.backend.errors import BinderyError, Unavailable

__all__ = ["Connector", "Lease", "Pool", "PoolLimits"]

C = TypeVar("C")
#: How often the reaper looks for idle or old connections.
REAP_INTERVAL_S = 30.0
#: How long :meth:`Pool.close` waits for leases still out.
CLOSE_GRACE_S = 10.0


class Connector(Protocol[C]):
    async def connect(self) -> C: ...

    async def close(self, connection: C) -> None: ...


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_size: int = 8
    min_size: int = 2
    acquire_timeout: float = 3.0
    idle_timeout: float = 300.0
    lifetime: float = 3600.0
    slow_query_ms: float = 100.0


@dataclass(slots=True)
class _Slot(Generic[C]):
    connection: C
    opened: float
    returned: float


class Lease(Generic[C]):
    """One checkout. ``broken = True`` (or an exception leaving the ``async with``) closes the
    connection at release instead of returning it."""

    __slots__ = ("_slot", "broken")

    def __init__(self, slot: _Slot[C]) -> None:
        self._slot = slot
        self.broken = False

    @property
    def connection(self) -> C:
        return self._slot.connection


class Pool(Generic[C]):
    def __init__(self, connector: Connector[C], limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self._connector = connector
        self._idle: deque[_Slot[C]] = deque()
        self._slots = asyncio.Semaphore(self.limits.max_size)
        self._active = 0
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None
        self.acquisitions = 0
        self.failed_acquisitions = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        self.queries = 0
        self.slow_queries = 0

    async def open(self) -> None:
        """Open ``min_size`` connections (a failure here is the caller's start-up error)."""
        now = time.monotonic()
        for _ in range(self.limits.min_size):
            self._idle.append(_Slot(await self._connector.connect(), now, now))
        self._reaper = asyncio.create_task(self._reap_forever(), name="bindery-pool-reaper")

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease[C]]:
        if self._closed:
            raise Unavailable("the service is shutting down")
        started = time.monotonic()
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.limits.acquire_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                self.failed_acquisitions += 1
                raise Unavailable("no database connection became free in time") from None
        else:
            # A free slot is taken at once: no timer to arm and cancel (most leases, as
            # SQLite operations run whole on the loop and give their connection back at once).
            await self._slots.acquire()
        try:
            slot = await self._checkout()
        except BaseException:
            self._slots.release()
            self.failed_acquisitions += 1
            raise
        waited = time.monotonic() - started
        self.acquisitions += 1
        self._wait_total += waited
        self._wait_max = max(self._wait_max, waited)
        self._active += 1
        lease = Lease(slot)
        try:
            yield lease
        except BinderyError:
            raise  # an answer (not found, conflict...): the connection is fine
        except BaseException:
            lease.broken = True
            raise
        finally:
            self._active -= 1
            await self._checkin(slot, broken=lease.broken)

    async def _checkout(self) -> _Slot[C]:
        now = time.monotonic()
        while self._idle:
            slot = self._idle.pop()  # the most recently used: its caches are warm
            if self._expired(slot, now):
                await self._discard(slot)
                continue
            return slot
        try:
            connection = await self._connector.connect()
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise Unavailable("the database cannot be reached") from exc
        return _Slot(connection, now, now)

    async def _checkin(self, slot: _Slot[C], *, broken: bool) -> None:
        try:
            now = time.monotonic()
            if broken or self._closed or now - slot.opened > self.limits.lifetime:
                await self._discard(slot)
            else:
                slot.returned = now
                self._idle.append(slot)
        finally:
            self._slots.release()

    def _expired(self, slot: _Slot[C], now: float) -> bool:
        return (
            now - slot.returned > self.limits.idle_timeout
            or now - slot.opened > self.limits.lifetime
        )

    async def _discard(self, slot: _Slot[C]) -> None:
        with contextlib.suppress(Exception):
            await self._connector.close(slot.connection)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            await self.reap()

    async def reap(self) -> None:
        """Close expired idle connections, then top the idle ones up to ``min_size``."""
        now = time.monotonic()
        for slot in [slot for slot in self._idle if self._expired(slot, now)]:
            self._idle.remove(slot)
            await self._discard(slot)
        while not self._closed and self._active + len(self._idle) < self.limits.min_size:
            try:
                connection = await self._connector.connect()
            except Exception:
                return  # the next acquire reports it; a reaper has nobody to tell
            self._idle.appendleft(_Slot(connection, now, now))

    def record_queries(self, count: int, slow: int) -> None:
        self.queries += count
        self.slow_queries += slow

    def metrics(self) -> dict[str, Any]:
        waits = self.acquisitions or 1
        return {
            "active": self._active,
            "idle": len(self._idle),
            "max": self.limits.max_size,
            "min": self.limits.min_size,
            "acquisitions": self.acquisitions,
            "failed_acquisitions": self.failed_acquisitions,
            "wait_ms_avg": round(self._wait_total / waits * 1000, 3),
            "wait_ms_max": round(self._wait_max * 1000, 3),
            "slow_queries": self.slow_queries,
            "queries": self.queries,
            "slow_query_ms": self.limits.slow_query_ms,
        }

    async def close(self) -> None:
        """Refuse new leases, wait (bounded) for those out, close every connection."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        deadline = time.monotonic() + CLOSE_GRACE_S
        while self._active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        while self._idle:
            await self._discard(self._idle.pop())
