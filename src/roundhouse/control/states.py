"""Instance states, their groups and the table of allowed transitions.

This module must not depend on any other module of Roundhouse nor on anything outside the
standard library: everything else imports it (Supervisor's ``states.py`` is the model).

    pending ─> starting ─> running <─> degraded
                  │          │  ^ \\      │
                  │          v  │  \\     v
                  │        unhealthy ─> (any running state) ─> stopping ─> stopped
                  v                                                          │
               backoff <── (exit of a starting or running instance)          │
                  │                                                          │
                  └─> failed  (crash loop, spawn error)      stopped/failed ─┴─> starting
"""

from __future__ import annotations

import enum

__all__ = [
    "ACTIVE_STATES",
    "RUNNING_STATES",
    "STOPPED_STATES",
    "TRANSITIONS",
    "Health",
    "IllegalTransition",
    "InstanceState",
    "check_transition",
    "is_allowed",
]


class InstanceState(enum.StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"
    FAILED = "failed"


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


S = InstanceState

#: States in which the instance has a live process (or a reachable remote) that serves calls.
RUNNING_STATES: frozenset[InstanceState] = frozenset({S.RUNNING, S.DEGRADED, S.UNHEALTHY})
#: States in which the supervisor is working on the instance.
ACTIVE_STATES: frozenset[InstanceState] = RUNNING_STATES | {S.PENDING, S.STARTING, S.BACKOFF}
#: States from which nothing happens until someone asks.
STOPPED_STATES: frozenset[InstanceState] = frozenset({S.STOPPED, S.FAILED})

#: Every allowed transition; anything else is a bug in the supervisor.
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    S.PENDING: frozenset({S.STARTING, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FAILED, S.STOPPING}),
    S.RUNNING: frozenset({S.DEGRADED, S.UNHEALTHY, S.BACKOFF, S.STOPPING}),
    S.DEGRADED: frozenset({S.RUNNING, S.UNHEALTHY, S.BACKOFF, S.STOPPING}),
    S.UNHEALTHY: frozenset({S.RUNNING, S.DEGRADED, S.BACKOFF, S.STOPPING}),
    S.BACKOFF: frozenset({S.STARTING, S.FAILED, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset({S.STARTING}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED}),
}


class IllegalTransition(RuntimeError):
    def __init__(self, old: InstanceState, new: InstanceState) -> None:
        super().__init__(f"illegal instance transition {old.value} -> {new.value}")
        self.old = old
        self.new = new


def is_allowed(old: InstanceState, new: InstanceState) -> bool:
    return new in TRANSITIONS[old]


def check_transition(old: InstanceState, new: InstanceState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new)
