"""The backend's lifecycle when the face launches it (MCP_AUTO_LAUNCH_BACKEND, the default).

    choose a port ─> spawn ─> wait for /health ─> ready ─> watch ─┐
          ^                                                    crash
          └────────────── backoff (0.25 s, doubling to 10 s) <──┘

The backend runs as ``sys.executable -m roundhouse.bindery.backend --port P --db D`` through the
gateway's own process runtime (:class:`~roundhouse.control.runtimes.process.ProcessRuntime`): its
own process group, the parent-death signal, a watchdog for the group, and the bounded stop
sequence (SIGTERM, SIGKILL after :data:`STOP_TIMEOUT`). Its stdout and stderr are copied to the
face's stderr, line by line.

The port is BINDERY_PORT when free, else the next free one from BINDERY_PORT_RANGE; with
BINDERY_PORT=0 the backend binds any free port itself and the face reads which from its
``bindery listening on http://127.0.0.1:PORT`` line (no race with other processes). A backend that
crashes is started again on the same port when that is still free; ``on_ready(url)`` is called
each time a start has passed its health check, so the client can follow a move and let its
breaker probe at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx

from roundhouse.bindery.face.settings import FaceSettings
from roundhouse.control.runtimes.ports import PortAllocator, port_is_free
from roundhouse.control.runtimes.process import ManagedProcess, ProcessRuntime, StopTimeouts
from roundhouse.errors import RoundhouseError

__all__ = ["BackendManager"]

log = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
#: SIGTERM first; SIGKILL when the backend has not exited this many seconds later.
STOP_TIMEOUT: Final = 5.0
#: Delay before restart number n (from 0) is BACKOFF_BASE * 2**n, at most BACKOFF_MAX.
BACKOFF_BASE: Final = 0.25
BACKOFF_MAX: Final = 10.0
#: A backend that stayed up this long has recovered: the next crash restarts it quickly again.
STABLE_AFTER: Final = 30.0
HEALTH_INTERVAL: Final = 0.05
HEALTH_REQUEST_TIMEOUT: Final = 2.0
_LISTENING: Final = re.compile(rb"bindery listening on https?://[^\s:]+:(\d+)")


class BackendManager:
    """Runs the Bindery backend while the face runs. ``start`` once, ``stop`` once."""

    def __init__(self, settings: FaceSettings) -> None:
        self._settings = settings
        self._on_ready: Callable[[str], None] = lambda url: None
        self._runtime = ProcessRuntime()
        self._ports = PortAllocator(*settings.bindery_port_range)
        self._process: ManagedProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Chosen now, so the client knows where to go before the backend is up (0: the
        #: backend picks, and says which).
        self.port = self._choose_port(settings.bindery_port)
        self._announced: asyncio.Future[int] | None = None
        self.restarts = 0
        #: Set once the first start passed its health check, or gave up trying.
        self.first_start_done = asyncio.Event()
        #: Set while a started backend is healthy, cleared when it exits.
        self.healthy = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, on_ready: Callable[[str], None]) -> None:
        """Begin launching in the background; ``on_ready(url)`` after every healthy start."""
        self._on_ready = on_ready
        self._runtime.start()
        self._task = asyncio.create_task(self._supervise(), name="bindery backend")

    async def wait_first_start(self) -> None:
        """Wait (bounded by BINDERY_STARTUP_TIMEOUT) for the first start to finish."""
        if self.first_start_done.is_set():
            return  # every call after the first start: no timer to set up
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.bindery_startup_timeout):
                await self.first_start_done.wait()

    async def stop(self) -> None:
        """Stop the backend and its supervision for good; bounded, and safe to call twice."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        process, self._process = self._process, None
        if process is not None:
            await process.stop(StopTimeouts(grace=0.0, term=STOP_TIMEOUT))
        await self._runtime.close()

    # --- supervision ------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_once()
            except RoundhouseError as exc:
                log.error("bindery backend could not be started: %s", exc.message)
                self.first_start_done.set()
            except Exception:
                # Supervision must outlive any one failed start, or nothing would restart.
                log.exception("bindery backend supervision failed; trying again")
                self.first_start_done.set()
            finally:
                self.healthy.clear()
            if self._stopping:
                return
            failures = 0 if time.monotonic() - started > STABLE_AFTER else failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, failures - 1))
            self.restarts += 1
            log.warning("bindery backend restarting in %.2f s (restart %d)", delay, self.restarts)
            await asyncio.sleep(delay)
            if self.port and not port_is_free(self.port):  # taken meanwhile: move
                self._ports.release(self.port)
                wanted = self._settings.bindery_port
                self.port = 0 if wanted == 0 else self._choose_port(self.port)

    async def _run_once(self) -> None:
        """Spawn, wait healthy, announce, wait for the exit."""
        announced = self._announced = asyncio.get_running_loop().create_future()
        process = await self._spawn()
        self._process = process
        copies = [
            asyncio.create_task(_copy_lines(process.stderr, self._heard)),
            asyncio.create_task(_copy_lines(process.stdout, self._heard)),
        ]
        try:
            if await self._wait_healthy(process, announced):
                self.healthy.set()
                self.first_start_done.set()
                log.info("bindery backend ready (pid %d)", process.pid)
                self._on_ready(self.url)
                code = await process.wait()
                if not self._stopping:
                    log.error("bindery backend (pid %d) exited with %s", process.pid, code)
            elif not self._stopping:
                await process.stop(StopTimeouts(grace=0.0, term=STOP_TIMEOUT))
        finally:
            for copy in copies:
                copy.cancel()
            if not self._stopping:
                self._process = None

    async def _spawn(self) -> ManagedProcess:
        database = self._settings.database
        if "://" not in database:
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RoundhouseError(
                    f"cannot create the database's directory: {exc.strerror}"
                ) from exc
        argv = [
            sys.executable,
            "-m",
            "roundhouse.bindery.backend",
            "--port",
            str(self.port),
            "--db",
            database,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return await self._runtime.spawn(argv, env=env)

    def _heard(self, line: bytes) -> None:
        announced = self._announced
        if announced is not None and not announced.done():
            match = _LISTENING.search(line)
            if match:
                announced.set_result(int(match[1]))

    async def _wait_healthy(self, process: ManagedProcess, announced: asyncio.Future[int]) -> bool:
        """Wait for the listening line, then poll /health until it answers 200; False when the
        process exits or BINDERY_STARTUP_TIMEOUT runs out."""
        deadline = time.monotonic() + self._settings.bindery_startup_timeout
        # First the line saying where it listens (with port 0 it is the only way to know).
        exited = asyncio.ensure_future(process.wait())
        await asyncio.wait(
            {announced, exited},
            timeout=self._settings.bindery_startup_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        exited.cancel()
        if not announced.done():
            return self._gave_up(process)
        self.port = announced.result()
        async with httpx.AsyncClient(
            base_url=self.url, timeout=HEALTH_REQUEST_TIMEOUT, trust_env=False
        ) as http:
            while time.monotonic() < deadline and process.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/health")).status_code == 200:
                        return True
                await asyncio.sleep(HEALTH_INTERVAL)
        return self._gave_up(process)

    def _gave_up(self, process: ManagedProcess) -> bool:
        if process.returncode is None:
            log.error(
                "bindery backend did not become healthy within %.0f s",
                self._settings.bindery_startup_timeout,
            )
        else:
            log.error("bindery backend exited with %s while starting", process.returncode)
        self.first_start_done.set()
        return False

    def _choose_port(self, wanted: int) -> int:
        if wanted == 0 or port_is_free(wanted):
            return wanted
        port = self._ports.allocate()
        log.warning("port %d is taken; the bindery backend uses %d", wanted, port)
        return port


async def _copy_lines(stream: asyncio.StreamReader, heard: Callable[[bytes], None]) -> None:
    """Copy the backend's output to our stderr (never stdout: that is the protocol's)."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:
            continue  # a line over the stream's limit was dropped; the next one is read
        if not line:
            return
        heard(line)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.buffer.write(b"bindery backend: " + line.rstrip(b"\n") + b"\n")
            sys.stderr.buffer.flush()
