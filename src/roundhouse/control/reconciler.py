"""The reconciler: converges what runs (the supervisor) to what the registry asks for.

It runs at start, after every change of a spec (the manager calls :meth:`reconcile` with the
slug), and after a crash of the gateway, when it first clears what the last run left behind:
process groups it can prove were ours (pid plus start time) are stopped, and their rows are
reused, so nothing is started twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from roundhouse.control.runtimes.process import kill_leftover
from roundhouse.control.states import Health, InstanceState
from roundhouse.control.supervisor import Supervisor
from roundhouse.errors import NotFound
from roundhouse.store.records import InstanceRecord
from roundhouse.store.store import Store

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, store: Store, supervisor: Supervisor, boot_id: str) -> None:
        self._store = store
        self._supervisor = supervisor
        self._boot_id = boot_id
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def recover(self) -> int:
        """Stop processes a previous run left and mark their rows stopped. Returns how many."""
        killed = 0
        for record in await self._store.list_instances():
            if record.owner == self._boot_id:
                continue
            if record.pid is not None and await kill_leftover(record.pid, record.pid_start_ticks):
                killed += 1
            if record.state is not InstanceState.STOPPED or record.pid is not None:
                _mark_stopped(record)
                await self._store.save_instance(record)
        return killed

    async def reconcile_all(self) -> None:
        servers = await self._store.list_servers()
        known = {record.slug for record in servers}
        for slug in {w.record.server for w in self._supervisor.all_workers()} - known:
            await self.reconcile(slug)
        for record in servers:
            await self.reconcile(record.slug)

    async def reconcile(self, slug: str, *, restart: bool = False) -> None:
        """Converge one server. Serialized per server, so two quick changes apply in order."""
        async with self._locks[slug]:
            try:
                server = await self._store.get_server(slug)
            except NotFound:
                await self._supervisor.remove_server(slug)
                return
            rows = await self._store.list_instances(slug)
            desired = server.desired_instances
            await self._supervisor.apply(server.spec, desired, rows, restart=restart)
            if server.spec.enabled:
                # Rows beyond the desired count belong to instances scaled away (maybe by a
                # previous run); the supervisor has removed their workers.
                for row in rows:
                    if row.ordinal >= desired:
                        await self._store.delete_instance(row.id)

    async def remove(self, slug: str) -> None:
        """Stop a server's instances, then forget it."""
        async with self._locks[slug]:
            await self._supervisor.remove_server(slug)
            await self._store.delete_server(slug)


def _mark_stopped(record: InstanceRecord) -> None:
    record.state = InstanceState.STOPPED
    record.health = Health.UNKNOWN
    record.pid = record.pgid = record.pid_start_ticks = None
    record.port = None
    record.endpoint = None
