"""The in-process event bus: every state change in Roundhouse is published here.

Subscribers (the API's event stream, log followers, metrics, later Redis) each get a bounded
queue. A subscriber that cannot keep up loses its oldest events, never blocks the publisher:
the supervisor must not wait on a slow dashboard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "EventBus", "Subscription"]

DEFAULT_QUEUE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. ``kind`` is dotted: ``instance.state``, ``instance.log``…"""

    kind: str
    data: dict[str, Any]
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ts": self.ts, **self.data}


class Subscription:
    def __init__(self, predicate: Callable[[Event], bool] | None, size: int) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self._predicate = predicate
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self._predicate is not None and not self._predicate(event):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class EventBus:
    """Fan-out of events to subscribers and to synchronous listeners (metrics, tests)."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def publish(self, kind: str, **data: Any) -> Event:
        event = Event(kind, data)
        for listener in self._listeners:
            listener(event)
        for subscription in self._subscriptions:
            subscription._offer(event)
        return event

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.remove(listener)

    @asynccontextmanager
    async def subscribe(
        self,
        predicate: Callable[[Event], bool] | None = None,
        *,
        size: int = DEFAULT_QUEUE_SIZE,
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(predicate, size)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
