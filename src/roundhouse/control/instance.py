"""One instance of a server, driven through its state machine by its own task.

An :class:`InstanceWorker` owns everything about one running copy: the process (or the remote
URL), the MCP connection the supervisor speaks over, the health loop, the stderr sink, the
backoff bookkeeping. The supervisor creates and removes workers; the worker alone changes its
state, always through :meth:`InstanceWorker._transition`, which checks the transition table,
persists the record and publishes the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from roundhouse.control.launch import Ended, InstanceContext, Launch
from roundhouse.control.runtimes.process import SpawnError
from roundhouse.control.states import Health, InstanceState, check_transition
from roundhouse.control.stderr import StderrSink
from roundhouse.errors import RoundhouseError, UpstreamError
from roundhouse.protocol.eras import Handshake
from roundhouse.spec import HttpTransport, ServerSpec, ToolsSpec
from roundhouse.store.records import InstanceRecord
from roundhouse.upstream.base import Connection

__all__ = ["InstanceContext", "InstanceWorker"]

log = logging.getLogger(__name__)

S = InstanceState
#: The states in which an instance with a connection takes calls.
_TAKES_CALLS = frozenset({S.RUNNING, S.DEGRADED})


def _nothing() -> None:
    return None


class _Want(Enum):
    RUN = "run"
    STOP = "stop"
    REMOVE = "remove"


class InstanceWorker:
    def __init__(self, record: InstanceRecord, spec: ServerSpec, ctx: InstanceContext) -> None:
        self.record = record
        #: The record's id, fixed for the worker's life; a plain attribute because the data
        #: plane reads it on every call (``gateway.upstreams.Instance``).
        self.id: str = record.id
        self.spec = spec
        self._ctx = ctx
        self._want = _Want.RUN
        self._restart_requested = False
        self._changed = asyncio.Event()
        self.launch: Launch | None = None
        #: Called whenever ``ready`` may have changed (the owner keeps a table of ready
        #: instances); every assignment to ``record.state`` or ``launch`` is followed by it.
        self.on_ready_change: Callable[[], None] = _nothing
        #: What the data plane reads of a ready instance on every call, as plain attributes:
        #: the connection and handshake of the current launch and the call timeout, as they
        #: were at the last change of state or launch (``_readiness_changed``). A launch sets
        #: them while STARTING and clears them after it is let go, so for an instance that
        #: takes calls they are its launch's own.
        self.connection: Connection | None = None
        self.handshake: Handshake | None = None
        self.call_timeout: float = spec.timeouts.call
        self.stderr = StderrSink(
            server=record.server,
            instance=record.id,
            bus=ctx.bus,
            log_file=ctx.logs_dir / record.server / f"{record.id}.log",
            ring_lines=ctx.ring_lines,
            max_bytes=ctx.log_bytes,
            backups=ctx.log_backups,
        )
        self._fast_exits = 0
        self._consecutive_restarts = 0
        self.outstanding = 0
        self.task: asyncio.Task[None] | None = None

    # --- what the supervisor asks -------------------------------------------------------------

    @property
    def state(self) -> InstanceState:
        return self.record.state

    # What the data plane reads (``gateway.upstreams.Instance``).

    @property
    def slug(self) -> str:
        return self.record.server

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def tools_spec(self) -> ToolsSpec:
        return self.spec.tools

    @property
    def degraded(self) -> bool:
        return self.record.state != S.RUNNING

    @property
    def ready(self) -> bool:
        # Asked for every instance of a server on every call: no property chain.
        launch = self.launch
        return (
            launch is not None
            and launch.connection is not None
            and self.record.state in _TAKES_CALLS
        )

    def want_running(self, spec: ServerSpec | None = None, *, restart: bool = False) -> None:
        if spec is not None and spec != self.spec:
            self.spec = spec
            restart = True
        self._want = _Want.RUN
        if restart:
            self._restart_requested = True
        self._changed.set()

    def want_stopped(self) -> None:
        self._want = _Want.STOP
        self._changed.set()

    def want_removed(self) -> None:
        self._want = _Want.REMOVE
        self._changed.set()

    def _readiness_changed(self) -> None:
        """After every assignment to ``record.state`` or ``launch``: refresh what the data
        plane reads, then tell the owner (its table of ready instances)."""
        launch = self.launch
        self.connection = launch.connection if launch is not None else None
        self.handshake = launch.handshake if launch is not None else None
        self.call_timeout = self.spec.timeouts.call
        self.on_ready_change()

    # --- the state machine --------------------------------------------------------------------

    async def _transition(self, new: InstanceState, reason: str = "") -> None:
        old = self.record.state
        if old == new:
            return
        check_transition(old, new)
        self.record.state = new
        self._readiness_changed()
        now = time.time()
        if new == S.STARTING:
            self.record.started_at = now
            self.record.stopped_at = None
            self.record.health = Health.UNKNOWN
        elif new in (S.STOPPED, S.FAILED, S.BACKOFF):
            self.record.stopped_at = now
            self.record.health = Health.UNKNOWN
            self.record.pid = self.record.pgid = self.record.pid_start_ticks = None
            self.record.endpoint = self.record.transport = None
            self.record.stderr_tail = [entry.line for entry in self.stderr.tail(50)]
        if new == S.FAILED and reason:
            self.record.last_error = reason
        # Published the moment the state changes (before the write, which awaits), so no one
        # can see the new state without its event having been sent.
        self._ctx.bus.publish(
            "instance.state",
            server=self.record.server,
            instance=self.record.id,
            old=old.value,
            new=new.value,
            reason=reason,
        )
        log.info("%s: %s -> %s %s", self.record.id, old.value, new.value, reason)
        await self._ctx.save(self.record)

    async def run(self) -> None:
        """The worker's whole life: start, watch, restart with backoff, stop when asked."""
        try:
            while self._want is not _Want.REMOVE:
                if self._parked():
                    # Asked to stop: failed becomes stopped too (a person cleared it). Failed
                    # and not asked: stay failed, keeping the exit code and stderr tail.
                    if self._want is _Want.STOP or self.record.state != S.FAILED:
                        await self._settle_stopped("stopped")
                    if self._parked():
                        await self._wait_for_change()
                    continue
                if self._restart_requested:
                    self._restart_requested = False
                    self._fast_exits = 0
                    self._consecutive_restarts = 0
                try:
                    await self._run_once()
                except Ended as exit_:
                    await self._after_exit(exit_)
        finally:
            # Removal, or cancellation at shutdown: either way the process must end.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release())
            self.stderr.close()

    async def _settle_stopped(self, reason: str) -> None:
        """Reach ``stopped`` by the legal path from wherever the instance is."""
        state = self.record.state
        if state in (S.STARTING, S.RUNNING, S.DEGRADED, S.UNHEALTHY):
            await self._transition(S.STOPPING, reason)
        await self._release()
        await self._transition(S.STOPPED, reason)

    def _parked(self) -> bool:
        """Nothing to do until someone asks: stopped, or failed and not asked to restart."""
        if self._want is _Want.STOP:
            return True
        return self.record.state == S.FAILED and not self._restart_requested

    async def _wait_for_change(self, timeout: float | None = None) -> None:
        """Wait until a ``want_*`` call (or one made since the last wait) or ``timeout``.

        The event is a latch: a change made while we were busy is seen by the next wait, and
        every caller re-checks what is wanted afterwards.
        """
        if not self._changed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    async def _after_exit(self, exit_: Ended) -> None:
        spec = self.spec
        record = self.record
        uptime = time.time() - (record.started_at or time.time())
        await self._release()
        if exit_.code is not None:
            record.last_exit_code = exit_.code
        record.last_error = exit_.reason
        if self._want is not _Want.RUN:
            await self._settle_stopped(f"{exit_.reason} while stopping")
            return
        # Every unplanned exit is recorded the same way: into backoff, where what comes next
        # is decided — another start after the delay, failed, or stopped.
        policy = spec.restart.policy
        clean = exit_.code == 0
        if policy == "never" or (policy == "on-failure" and clean):
            await self._transition(S.BACKOFF, exit_.reason)
            await self._transition(S.STOPPED if clean else S.FAILED, exit_.reason)
            return
        if uptime >= spec.restart.reset_after:
            self._consecutive_restarts = 0
        if not exit_.transient:
            fast = uptime < spec.restart.fast_exit_seconds
            self._fast_exits = self._fast_exits + 1 if fast else 0
        delay = min(
            spec.restart.backoff_initial * 2**self._consecutive_restarts, spec.restart.backoff_max
        )
        # A remote server that is down is not a crash loop of ours: it backs off, never fails.
        remote = isinstance(spec.transport, HttpTransport)
        crash_loop = not remote and self._fast_exits >= spec.restart.max_fast_exits
        await self._transition(
            S.BACKOFF, exit_.reason if crash_loop else f"{exit_.reason}; restarting in {delay:g}s"
        )
        if crash_loop:
            await self._transition(
                S.FAILED,
                f"crash loop: {self._fast_exits} exits within {spec.restart.fast_exit_seconds:g}s"
                f" of start; last: {exit_.reason}",
            )
            return
        self._consecutive_restarts += 1
        deadline = time.monotonic() + delay
        while self._want is _Want.RUN and not self._restart_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self._wait_for_change(remaining)
        if self._want is _Want.RUN:
            record.restart_count += 1
        else:
            await self._settle_stopped("stopped during backoff")

    async def _run_once(self) -> None:
        await self._transition(S.STARTING)
        start = asyncio.ensure_future(self._start_or_exit())
        asked = asyncio.ensure_future(self._changed_to_stop())
        try:
            await asyncio.wait({start, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            if not start.done():
                # Asked to stop (or restart) while starting: a hung start must not hold us.
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, Ended):
                    await start
        if start.cancelled():
            await self._transition(S.STOPPING, "asked during start")
            await self._release()
            await self._transition(S.STOPPED, "stopped")
            return
        cannot_start = start.result()  # raises Ended for a start that failed
        if cannot_start is not None:
            await self._release()
            self.record.last_exit_code = None
            await self._transition(S.FAILED, cannot_start)
            return
        self._ctx.bus.publish("instance.ready", server=self.record.server, instance=self.record.id)
        self.record.health = Health.HEALTHY
        await self._transition(S.RUNNING, "ready")
        await self._watch()

    async def _start_or_exit(self) -> str | None:
        """Start the instance. None when ready; the reason when its command cannot be started
        at all (that is final until someone changes or restarts it); raises :class:`Ended`
        for a start that failed in a way a retry may fix."""
        self.launch = launch = Launch(self.spec, self.record, self._ctx, self.stderr)
        self._readiness_changed()
        try:
            async with asyncio.timeout(self.spec.timeouts.start):
                await launch.start()
        except SpawnError as exc:
            return exc.message
        except TimeoutError as exc:
            raise Ended(f"not ready within {self.spec.timeouts.start:g}s") from exc
        except UpstreamError as exc:
            code = launch.process.returncode if launch.process is not None else None
            raise Ended(f"handshake failed: {exc.message}", code) from exc
        except OSError as exc:
            raise Ended(f"start failed: {exc.strerror or exc}") from exc
        except RoundhouseError as exc:  # e.g. no free port left in the range
            raise Ended(exc.message, transient=True) from exc
        return None

    async def _watch(self) -> None:
        """While running: wait for an exit, a request, or a health verdict."""
        waiters: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(self._health_loop()): "health",
            asyncio.ensure_future(self._changed_to_stop()): "asked",
        }
        process = self.launch.process if self.launch is not None else None
        if process is not None:
            waiters[asyncio.ensure_future(process.wait())] = "exit"
        lost = self.launch.connection_lost() if self.launch is not None else None
        if lost is not None:
            waiters[asyncio.ensure_future(lost)] = "lost"
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        finished = next(iter(done))
        why = waiters[finished]
        if why == "exit":
            code = finished.result()
            raise Ended(f"exited with code {code}", code)
        if why == "health":
            raise Ended(finished.result())
        if why == "lost":
            raise Ended(f"connection lost: {finished.result()}")
        await self._transition(S.STOPPING, "restart" if self._restart_requested else "asked")
        await self._release()
        await self._transition(S.STOPPED, "stopped")

    async def _changed_to_stop(self) -> None:
        while self._want is _Want.RUN and not self._restart_requested:
            await self._wait_for_change()

    async def _health_loop(self) -> str:
        health = self.spec.health
        failures = 0
        while True:
            await asyncio.sleep(health.interval)
            error, took = await self._check_once()
            self.record.last_health_check = time.time()
            if error is None:
                self.record.last_response_time = took
                failures = 0
                slow = (self.record.last_response_time or 0) > health.timeout / 2
                self.record.health = Health.DEGRADED if slow else Health.HEALTHY
                await self._transition(S.DEGRADED if slow else S.RUNNING, "health check")
            else:
                failures += 1
                self.record.health = Health.UNHEALTHY
                await self._transition(S.UNHEALTHY, error)
                if failures >= health.failures_before_restart:
                    return f"{failures} failed health checks; last: {error}"
            await self._ctx.save(self.record)

    async def _check_once(self) -> tuple[str | None, float | None]:
        if self.launch is None:
            return "not started", None
        return await self.launch.check()

    async def _release(self) -> None:
        """End the current run, if any: connection, process, port. Idempotent and bounded."""
        launch, self.launch = self.launch, None
        self._readiness_changed()
        if launch is not None:
            code = await launch.close()
            if launch.process is not None:
                self.record.last_exit_code = code

    # --- calls over the supervisor's connection -----------------------------------------------

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        launch = self.launch
        if launch is None:
            raise UpstreamError(f"instance {self.record.id} is not running")
        self.outstanding += 1
        try:
            return await launch.request(method, params)
        finally:
            self.outstanding -= 1
