"""Plain-dict views of servers and instances, as the API, the CLI and the Python API show them.

One place decides what a person sees of a record: secrets masked (``public_spec``), times as
ISO 8601 in UTC, an uptime for running instances, and a server's overall state and health.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from roundhouse.control.states import RUNNING_STATES, Health, InstanceState
from roundhouse.spec import public_spec
from roundhouse.store.records import InstanceRecord, ServerRecord

__all__ = ["instance_view", "server_health", "server_state", "server_view"]

#: When instances disagree, the server shows the first of these that any instance is in.
_STATE_ORDER = (
    InstanceState.STARTING,
    InstanceState.STOPPING,
    InstanceState.BACKOFF,
    InstanceState.FAILED,
    InstanceState.PENDING,
    InstanceState.STOPPED,
)


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def instance_view(record: InstanceRecord) -> dict[str, Any]:
    running = record.state in RUNNING_STATES
    return {
        "id": record.id,
        "server": record.server,
        "ordinal": record.ordinal,
        "state": record.state.value,
        "health": record.health.value,
        "pid": record.pid,
        "port": record.port,
        "endpoint": record.endpoint,
        "transport": record.transport,
        "started_at": _iso(record.started_at),
        "stopped_at": _iso(record.stopped_at),
        "uptime_seconds": (
            round(time.time() - record.started_at, 3) if running and record.started_at else None
        ),
        "last_health_check": _iso(record.last_health_check),
        "response_time_ms": (
            round(record.last_response_time * 1000, 3)
            if record.last_response_time is not None
            else None
        ),
        "restart_count": record.restart_count,
        "last_exit_code": record.last_exit_code,
        "last_error": record.last_error,
        "stderr_tail": list(record.stderr_tail),
    }


def server_state(server: ServerRecord, instances: list[InstanceRecord]) -> str:
    if not instances:
        return "stopped" if not server.spec.enabled or server.desired_instances == 0 else "pending"
    states = {record.state for record in instances}
    if len(states) == 1:
        return next(iter(states)).value
    if states & RUNNING_STATES:
        return InstanceState.DEGRADED.value
    return next(state.value for state in _STATE_ORDER if state in states)


def server_health(instances: list[InstanceRecord]) -> Health:
    running = [record for record in instances if record.state in RUNNING_STATES]
    if not running:
        broken = {InstanceState.FAILED, InstanceState.BACKOFF}
        return Health.UNHEALTHY if any(r.state in broken for r in instances) else Health.UNKNOWN
    healths = {record.health for record in running}
    if healths == {Health.HEALTHY} and len(running) == len(instances):
        return Health.HEALTHY
    if Health.HEALTHY in healths or Health.DEGRADED in healths:
        return Health.DEGRADED
    if healths == {Health.UNKNOWN}:
        return Health.UNKNOWN
    return Health.UNHEALTHY


def server_view(server: ServerRecord, instances: list[InstanceRecord]) -> dict[str, Any]:
    spec = server.spec
    return {
        "slug": spec.slug,
        "name": spec.display_name,
        "transport": spec.transport.type,
        "enabled": spec.enabled,
        "desired_instances": server.desired_instances,
        "state": server_state(server, instances),
        "health": server_health(instances).value,
        "created_at": _iso(server.created_at),
        "updated_at": _iso(server.updated_at),
        "spec": public_spec(spec),
        "instances": [instance_view(record) for record in instances],
    }
