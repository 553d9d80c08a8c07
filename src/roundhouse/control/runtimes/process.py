"""The local process runtime: spawn a server in its own process group, stop it for sure.

Every instance leads its own process group (``start_new_session``), so stopping it reaches the
children it forked too. Its leader gets ``PR_SET_PDEATHSIG`` = SIGKILL, and the :class:`Watchdog`
knows its group, so a gateway killed with ``kill -9`` leaves nothing behind. argv only, never a
shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from roundhouse.control.runtimes.watchdog import Watchdog
from roundhouse.errors import RoundhouseError

__all__ = [
    "PROCESS_REAP_TIMEOUT",
    "STDIN_CLOSE_GRACE",
    "ManagedProcess",
    "ProcessRuntime",
    "PushReader",
    "SpawnError",
    "StopTimeouts",
    "group_alive",
    "kill_leftover",
    "open_process",
    "process_start_ticks",
]

log = logging.getLogger(__name__)

#: After stdin is closed, how long a well-behaved server gets to exit on its own.
STDIN_CLOSE_GRACE = 2.0
#: After SIGKILL, how long we wait for the kernel to let us reap the leader.
PROCESS_REAP_TIMEOUT = 2.0
#: Stream buffer for the child's stdout: one JSON-RPC line may be this long before the reader
#: splits it itself.
STREAM_LIMIT = 1 << 20

_PR_SET_PDEATHSIG = 1


class PushReader(asyncio.StreamReader):
    """A child's stdout that can hand its bytes straight to a consumer as they arrive.

    Read like any StreamReader until ``push_to(consumer)``; from then on each chunk the pipe
    delivers goes to ``consumer`` from the pipe's own callback, and the reader only reports the
    end (``read()`` returns ``b""`` at EOF, or raises the pipe's error). A stdio connection
    resolves the waiting call right there, instead of waking a reader task that then wakes the
    caller: one event-loop turn less for every answer.
    """

    _consumer: Callable[[bytes], None] | None = None

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # pipes give bytes
        consumer = self._consumer
        if consumer is None:
            super().feed_data(data)
        else:
            consumer(data)

    def push_to(self, consumer: Callable[[bytes], None]) -> None:
        """Send what is buffered, then every later chunk, to ``consumer``."""
        # CPython's StreamReader keeps unread bytes in ``_buffer`` (a bytearray) and may have
        # paused the pipe when it grew past twice the limit; there is no public way to take
        # them without awaiting.
        buffered: bytearray = self._buffer  # type: ignore[attr-defined]
        self._consumer = consumer
        if buffered:
            early = bytes(buffered)
            buffered.clear()
            self._maybe_resume_transport()  # type: ignore[attr-defined]
            consumer(early)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The stdlib's subprocess protocol with a :class:`PushReader` on stdout."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # No data has reached the protocol yet: the transport queues pipe data until
        # connection_made has run, so swapping the reader here loses nothing.
        pipe = cast(asyncio.SubprocessTransport, transport).get_pipe_transport(1)
        if pipe is not None:
            reader = PushReader(limit=self._limit, loop=self._loop)  # type: ignore[attr-defined]
            reader.set_transport(pipe)
            self.stdout = reader


async def open_process(argv: Sequence[str], **options: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec(*argv, **options)`` with a :class:`PushReader` on
    stdout; the three streams are pipes unless ``options`` says otherwise."""
    loop = asyncio.get_running_loop()
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(limit=STREAM_LIMIT, loop=loop), *argv, **(pipes | options)
    )
    return asyncio.subprocess.Process(transport, protocol, loop)


class SpawnError(RoundhouseError):
    """The command could not be started at all (not found, not executable, bad cwd)."""


def _set_parent_death_signal(parent_pid: int) -> None:
    """Runs in the child between fork and exec: die with the gateway."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The gateway may have died between fork and prctl: then we were already reparented.
    if os.getppid() != parent_pid:
        os._exit(1)


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if there is no such pid.

    Together with the pid it names one process for good: a pid reused after a reboot or a wrap
    has another start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[19])


def group_alive(pgid: int) -> bool:
    """Does a process of the group still run? Zombies do not count: they are dead, only waiting
    for a parent (often init, for a killed server's orphans) to reap them."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_running_member(entry, pgid) for entry in os.scandir("/proc"))


def _running_member(entry: os.DirEntry[str], pgid: int) -> bool:
    if not entry.name.isdigit():
        return False
    try:
        with open(f"/proc/{entry.name}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return False
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is the state, fields[2] the process group.
    return int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill_leftover(pid: int, start_ticks: int | None, *, grace: float = 1.0) -> bool:
    """Stop a process group a previous run of the gateway left, if it is provably that group.

    The group is ours when its leader is the same process (pid and start time match), or when
    the leader is gone but a group with its id lives on: Linux does not hand out a pid that is
    still in use as a process group id, so such a group can only be the leader's, holding the
    children it forked. Returns True when something was found and stopped.
    """
    ticks = process_start_ticks(pid)
    ours = ticks is not None and ticks == start_ticks
    orphaned = ticks is None and group_alive(pid)
    if not (ours or orphaned):
        return False
    log.warning("stopping process group %d left by a previous run", pid)
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pid):
        await asyncio.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    return True


@dataclass(frozen=True, slots=True)
class StopTimeouts:
    """How long each step of a stop may take, in seconds."""

    grace: float = STDIN_CLOSE_GRACE
    term: float = 10.0


class ManagedProcess:
    """One running server process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process, runtime: ProcessRuntime) -> None:
        self._process = process
        self._runtime = runtime
        self.pid = process.pid
        self.pgid = process.pid
        self.start_ticks = process_start_ticks(process.pid)
        self.started_at = time.time()
        self._stop_task: asyncio.Future[int | None] | None = None
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        self.stdin: asyncio.StreamWriter = process.stdin
        self.stdout: asyncio.StreamReader = process.stdout
        self.stderr: asyncio.StreamReader = process.stderr

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        """Wait for the leader to exit, then clear what its group left behind."""
        code = await self._process.wait()
        self._reap_group()
        return code

    def _reap_group(self) -> None:
        # Children the leader forked share its group; they must not outlive it.
        if group_alive(self.pgid):
            _signal_group(self.pgid, signal.SIGKILL)
        self._runtime.watchdog.unwatch(self.pgid)

    def kill(self) -> None:
        _signal_group(self.pgid, signal.SIGKILL)

    async def stop(self, timeouts: StopTimeouts) -> int | None:
        """Close stdin, grace, SIGTERM to the group, SIGKILL after ``timeouts.term``, reap.

        Idempotent, and shielded: cancelling the caller does not interrupt it, or the process
        would leak. Every wait inside is bounded.
        """
        task = self._stop_task
        if task is None:
            task = self._stop_task = asyncio.ensure_future(self._stop(timeouts))
        return await asyncio.shield(task)

    async def _stop(self, timeouts: StopTimeouts) -> int | None:
        process = self._process
        if process.returncode is None:
            # SIGKILL comes ``term`` seconds after the stop began, whatever the steps before it
            # took: the stop timeout bounds the whole sequence.
            deadline = time.monotonic() + timeouts.term
            with contextlib.suppress(OSError, RuntimeError):
                self.stdin.close()
            if not await self._exited_within(min(timeouts.grace, timeouts.term)):
                _signal_group(self.pgid, signal.SIGTERM)
                if not await self._exited_within(max(0.0, deadline - time.monotonic())):
                    log.warning("instance pid %d ignored SIGTERM; sending SIGKILL", self.pid)
                    _signal_group(self.pgid, signal.SIGKILL)
                    await self._exited_within(PROCESS_REAP_TIMEOUT)
        # The leader is gone; anything left in its group gets the same end.
        if group_alive(self.pgid):
            _signal_group(self.pgid, signal.SIGTERM)
            deadline = time.monotonic() + min(1.0, timeouts.term)
            while time.monotonic() < deadline and group_alive(self.pgid):
                await asyncio.sleep(0.05)
            _signal_group(self.pgid, signal.SIGKILL)
            # SIGKILL is final, but delivery is not instant: give it a moment to land.
            deadline = time.monotonic() + PROCESS_REAP_TIMEOUT
            while time.monotonic() < deadline and group_alive(self.pgid):
                await asyncio.sleep(0.02)
        self._runtime.watchdog.unwatch(self.pgid)
        return process.returncode

    async def _exited_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._process.wait(), seconds)
        except TimeoutError:
            return False
        return True


class ProcessRuntime:
    """Spawns servers as local processes. One per gateway; owns the watchdog."""

    def __init__(self) -> None:
        self.watchdog = Watchdog()

    def start(self) -> None:
        self.watchdog.start()

    async def close(self) -> None:
        await self.watchdog.stop()

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` (no shell) in its own process group with pipes on stdin/out/err."""
        if not argv or not argv[0]:
            raise SpawnError("empty command")
        if cwd is not None and not os.path.isdir(cwd):
            raise SpawnError(f"cannot start {argv[0]!r}: working directory {cwd!r} does not exist")
        parent = os.getpid()
        try:
            process = await open_process(
                argv,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.ENOENT:
                reason = "no such file or directory"
            raise SpawnError(f"cannot start {argv[0]!r}: {reason}") from exc
        except (ValueError, subprocess.SubprocessError) as exc:
            raise SpawnError(f"cannot start {argv[0]!r}: {exc}") from exc
        self.watchdog.watch(process.pid)
        log.info("spawned %r as pid %d (%d args)", argv[0], process.pid, len(argv) - 1)
        return ManagedProcess(process, self)
