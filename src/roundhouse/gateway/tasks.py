"""Tasks (``tasks/get``, ``tasks/result``, ``tasks/cancel``, ``tasks/list``): whose, and where.

A server keeps its tasks in its own process, and one upstream process serves every client
session of the gateway. So the gateway must remember, for each task a call created, which
instance holds it (a later ``tasks/get`` sent to another instance would find nothing) and whose
it is: one client must neither read nor list another's tasks, though the upstream would show
them all. A 2026-07-28 client has no session; its tasks belong to one shared anonymous owner
and are reached by their (unguessable) ids.

The table is bounded: entries expire with the task's own ``ttl`` (capped), and past
``max_entries`` the oldest are dropped first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ANONYMOUS", "TaskRoute", "TaskTable"]

#: The owner of tasks created by clients without a session (2026-07-28).
ANONYMOUS = ""
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 86400.0
MAX_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class TaskRoute:
    slug: str
    instance: str
    owner: str
    expires: float


class TaskTable:
    def __init__(
        self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._routes: dict[str, TaskRoute] = {}
        self._max = max_entries
        self._clock = clock

    def __len__(self) -> int:
        return len(self._routes)

    def learn(self, task: Any, slug: str, instance: str, owner: str) -> None:
        """Record the task a result announced (``{"task": {"taskId", "ttl"?...}}``)."""
        if not isinstance(task, dict):
            return
        task_id = task.get("taskId")
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_ID_LENGTH:
            return
        ttl_ms = task.get("ttl")
        ttl = DEFAULT_TTL_S
        if isinstance(ttl_ms, int | float) and not isinstance(ttl_ms, bool) and ttl_ms > 0:
            ttl = min(ttl_ms / 1000.0, MAX_TTL_S)
        self._routes.pop(task_id, None)
        self._routes[task_id] = TaskRoute(slug, instance, owner, self._clock() + ttl)
        while len(self._routes) > self._max:
            del self._routes[next(iter(self._routes))]

    def route(self, task_id: Any, owner: str, slug: str | None = None) -> TaskRoute | None:
        """Where ``owner``'s task lives; None when unknown, expired, someone else's, or (with
        ``slug``, the per-server endpoint) another server's — the same answer for all four, so
        a client learns nothing about tasks that are not its own."""
        if not isinstance(task_id, str):
            return None
        found = self._routes.get(task_id)
        if found is None:
            return None
        if found.expires < self._clock():
            del self._routes[task_id]
            return None
        if found.owner != owner or (slug is not None and found.slug != slug):
            return None
        return found

    def owned(self, owner: str, slug: str | None = None) -> dict[str, TaskRoute]:
        """The owner's live tasks (optionally of one server), by id."""
        now = self._clock()
        for task_id in [t for t, r in self._routes.items() if r.expires < now]:
            del self._routes[task_id]
        return {
            task_id: found
            for task_id, found in self._routes.items()
            if found.owner == owner and (slug is None or found.slug == slug)
        }

    def instances(self, routes: dict[str, TaskRoute]) -> Iterator[tuple[str, str]]:
        """The distinct (slug, instance) pairs that hold these tasks."""
        yield from dict.fromkeys((r.slug, r.instance) for r in routes.values())
