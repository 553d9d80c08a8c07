"""The supervisor: owns one worker task per instance, and nothing else touches a process.

It is told what to run by the reconciler (``apply``) and by people through the manager
(``restart``). It publishes the table of ready instances that the data plane reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from roundhouse.control.instance import InstanceWorker
from roundhouse.control.launch import InstanceContext
from roundhouse.control.stderr import LogLine
from roundhouse.errors import NotFound, UpstreamError
from roundhouse.spec import ServerSpec
from roundhouse.store.records import InstanceRecord

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, ctx: InstanceContext) -> None:
        self._ctx = ctx
        self._workers: dict[str, dict[int, InstanceWorker]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        #: slug -> its instances that take calls now (only slugs that have one). The data plane
        #: reads it on every call, so it is rebuilt when an instance's readiness may change
        #: (its state or its launch: ``InstanceWorker.on_ready_change``) instead of being
        #: worked out per call; a new dict each time, so a reader never sees it half-built.
        self.ready_table: dict[str, tuple[InstanceWorker, ...]] = {}

    @classmethod
    @asynccontextmanager
    async def running(cls, ctx: InstanceContext) -> AsyncIterator[Supervisor]:
        supervisor = cls(ctx)
        try:
            yield supervisor
        finally:
            await supervisor.shutdown()

    # --- the instance table -------------------------------------------------------------------

    def workers(self, slug: str) -> list[InstanceWorker]:
        return [w for _, w in sorted(self._workers.get(slug, {}).items())]

    def all_workers(self) -> list[InstanceWorker]:
        return [w for slug in sorted(self._workers) for w in self.workers(slug)]

    def ready(self, slug: str) -> Sequence[InstanceWorker]:
        return self.ready_table.get(slug, ())

    def ready_slugs(self) -> list[str]:
        return sorted(self.ready_table)

    def _rebuild_ready(self) -> None:
        table: dict[str, tuple[InstanceWorker, ...]] = {}
        for slug, workers in self._workers.items():
            ready = tuple(worker for worker in workers.values() if worker.ready)
            if ready:
                table[slug] = ready
        self.ready_table = table

    def known(self, slug: str) -> bool:
        return bool(self._workers.get(slug))

    def pick(self, slug: str) -> InstanceWorker:
        """The ready instance with the fewest requests in flight."""
        ready = self.ready(slug)
        if not ready:
            raise UpstreamError(f"server {slug!r} has no running instance")
        return min(ready, key=lambda worker: worker.outstanding)

    async def call(
        self, slug: str, method: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.pick(slug).request(method, params)

    def logs(self, slug: str, lines: int) -> list[LogLine]:
        entries = [entry for w in self.workers(slug) for entry in w.stderr.tail(lines)]
        entries.sort(key=lambda entry: entry.ts)
        return entries[-lines:] if lines > 0 else []

    # --- steering -----------------------------------------------------------------------------

    async def apply(
        self,
        spec: ServerSpec,
        desired: int,
        existing: list[InstanceRecord],
        *,
        restart: bool = False,
    ) -> None:
        """Make the server's workers match ``desired`` copies of ``spec`` (0 = all stopped).

        ``existing`` are the registry's instance rows for this server; a worker for an ordinal
        reuses its row, so a restarted gateway does not add duplicates.
        """
        slug = spec.slug
        workers = self._workers.setdefault(slug, {})
        if not spec.enabled or self._closing:
            for worker in workers.values():
                worker.spec = spec
                worker.want_stopped()
            return
        rows = {record.ordinal: record for record in existing}
        for ordinal in range(desired):
            if ordinal in workers:
                workers[ordinal].want_running(spec, restart=restart)
                continue
            record = rows.get(ordinal) or InstanceRecord(
                id=f"{slug}-{uuid.uuid4().hex[:8]}", server=slug, ordinal=ordinal
            )
            workers[ordinal] = worker = InstanceWorker(record, spec, self._ctx)
            worker.on_ready_change = self._rebuild_ready
            self._spawn_task(worker)
        for ordinal in sorted(workers):
            if ordinal >= desired:
                await self._remove(slug, ordinal)

    async def restart(self, slug: str) -> None:
        workers = self.workers(slug)
        if not workers:
            raise NotFound(f"server {slug!r} has no instances to restart")
        for worker in workers:
            worker.want_running(restart=True)

    async def remove_server(self, slug: str) -> None:
        for ordinal in list(self._workers.get(slug, {})):
            await self._remove(slug, ordinal)
        self._workers.pop(slug, None)
        self._rebuild_ready()

    async def _remove(self, slug: str, ordinal: int) -> None:
        worker = self._workers[slug].pop(ordinal)
        self._rebuild_ready()
        worker.want_removed()
        if worker.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await worker.task

    def _spawn_task(self, worker: InstanceWorker) -> None:
        task = asyncio.create_task(worker.run(), name=f"instance {worker.record.id}")
        worker.task = task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("instance task %s crashed", task.get_name(), exc_info=task.exception())

    async def shutdown(self) -> None:
        """Stop every instance, all at once, and wait for each to be gone. Bounded by the
        instances' own stop timeouts; cancellation does not interrupt it."""
        self._closing = True
        for workers in self._workers.values():
            for worker in workers.values():
                worker.want_stopped()
        tasks = [w.task for ws in self._workers.values() for w in ws.values() if w.task]

        async def stop_all() -> None:
            for workers in self._workers.values():
                for worker in workers.values():
                    worker.want_removed()
            await asyncio.gather(*tasks, return_exceptions=True)

        await asyncio.shield(stop_all())
        self._workers.clear()
        self._rebuild_ready()
