"""What the registry holds: servers (desired state) and instances (last known actual state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from roundhouse.control.states import Health, InstanceState
from roundhouse.spec import ServerSpec

__all__ = ["InstanceRecord", "ServerRecord"]


@dataclass(frozen=True, slots=True)
class ServerRecord:
    spec: ServerSpec
    #: How many copies should run (``scale``); within ``spec.instances.min..max``.
    desired_instances: int
    #: Bumped on every change of the record; the reconciler compares it to what it last saw.
    generation: int
    created_at: float
    updated_at: float

    @property
    def slug(self) -> str:
        return self.spec.slug


@dataclass(slots=True)
class InstanceRecord:
    id: str
    server: str
    ordinal: int
    state: InstanceState = InstanceState.PENDING
    health: Health = Health.UNKNOWN
    pid: int | None = None
    #: Process group of the instance (== pid: every instance leads its own group).
    pgid: int | None = None
    #: Start time of ``pid`` in clock ticks since boot (/proc/PID/stat field 22), so a later run
    #: can tell the instance's process from an unrelated one that reused the pid.
    pid_start_ticks: int | None = None
    port: int | None = None
    endpoint: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    last_health_check: float | None = None
    #: Seconds the last health check took; feeds ``avg_response_time_ms``.
    last_response_time: float | None = None
    restart_count: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    stderr_tail: list[str] = field(default_factory=list)
    #: The run of the gateway that owns the process (``boot_id``), to recognise leftovers.
    owner: str | None = None
    updated_at: float = 0.0
    #: The wire the running instance speaks: ``stdio``, ``streamable-http`` or ``sse`` (an
    #: ``http`` server may turn out to be either). Known while it runs; not stored.
    transport: str | None = field(default=None, metadata={"stored": False})
