"""What the data plane sees of the supervisor: ready instances, each with its connection.

The supervisor (``control/``) implements :class:`InstanceTable`; the gateway never imports it.
Balancing is least outstanding requests among healthy instances, degraded ones only when no
healthy one is ready, and a legacy session sticks to the instance it first used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from roundhouse.errors import UpstreamError
from roundhouse.protocol.eras import Handshake
from roundhouse.spec import ToolsSpec
from roundhouse.upstream.base import Connection

__all__ = ["Instance", "InstanceTable", "NoInstance", "pick"]


class Instance(Protocol):
    outstanding: int

    @property
    def id(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def connection(self) -> Connection | None: ...
    @property
    def handshake(self) -> Handshake | None: ...
    @property
    def call_timeout(self) -> float: ...
    @property
    def priority(self) -> int: ...
    @property
    def tools_spec(self) -> ToolsSpec: ...
    @property
    def degraded(self) -> bool: ...


class InstanceTable(Protocol):
    @property
    def ready_table(self) -> Mapping[str, Sequence[Instance]]:
        """slug -> its ready instances, for servers that have one; what ``ready`` answers
        from, kept up to date by the table's owner (read on every call)."""
        ...

    def ready(self, slug: str) -> Sequence[Instance]: ...
    def ready_slugs(self) -> list[str]: ...
    def known(self, slug: str) -> bool: ...


class NoInstance(UpstreamError):
    """The server exists but none of its instances can take a call right now."""


def pick(
    instances: Sequence[Instance], sticky: str | None = None, era: str | None = None
) -> Instance:
    """The instance for the next call: the sticky one if ready, else the least busy healthy,
    one that speaks the client's ``era`` natively when there is one."""
    if not instances:
        raise NoInstance("no instance of this server is ready")
    if sticky is not None:
        for instance in instances:
            if instance.id == sticky:
                return instance
    if era is not None and len(instances) > 1:
        native = [i for i in instances if i.handshake is not None and i.handshake.era == era]
        if native:
            instances = native
    best = instances[0]
    for instance in instances[1:]:
        if (instance.degraded, instance.outstanding) < (best.degraded, best.outstanding):
            best = instance
    return best
