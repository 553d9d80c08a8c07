"""Serving the backend: open the database, listen, answer until SIGINT/SIGTERM, then stop in a
fixed order — stop accepting, let in-flight requests finish (bounded by
:data:`GRACEFUL_SHUTDOWN_S`), close the pool.

The socket is bound and listening before the ``bindery listening on http://HOST:PORT`` line goes
to stderr, so that whoever reads the line (the MCP face, tests with ``--port 0``) may connect at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import uvicorn

from roundhouse.bindery.backend.database import Database
from roundhouse.bindery.backend.http import BinderyApp
from roundhouse.bindery.backend.pool import PoolLimits
from roundhouse.bindery.backend.service import Bindery
from roundhouse.bindery.backend.wire import CoalescingProtocol

__all__ = ["GRACEFUL_SHUTDOWN_S", "listen", "running", "serve"]

log = logging.getLogger("roundhouse.bindery")
GRACEFUL_SHUTDOWN_S = 10
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio disables Nagle only on sockets whose proto says TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _config(app: BinderyApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=CoalescingProtocol,
        lifespan="off",
        proxy_headers=False,  # a local backend: no proxy in front whose headers to trust
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def _ignore_repeat(sig: int, frame: FrameType | None) -> None:
    """A stop signal during shutdown: the sequence is already bounded; let it finish."""


async def serve(
    db: str, *, host: str = "127.0.0.1", port: int = 0, limits: PoolLimits | None = None
) -> None:
    """Run until SIGINT or SIGTERM (uvicorn's handlers), then shut down in order."""
    database = Database(db, limits)
    await database.open()
    try:
        sock = listen(host, port)
        with sock:
            server = uvicorn.Server(_config(BinderyApp(Bindery(database))))
            print(f"bindery listening on {_url(sock)}", file=sys.stderr, flush=True)
            # uvicorn re-raises the signal that stopped it to the handler there before: make
            # that a no-op, so the pool is still closed before the process ends.
            previous = {sig: signal.signal(sig, _ignore_repeat) for sig in _STOP_SIGNALS}
            try:
                await server.serve(sockets=[sock])
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    finally:
        await database.close()
        log.info("bindery stopped")


class _QuietServer(uvicorn.Server):
    """In-process serving (tests, embedding): the host process owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running(
    db: str, *, host: str = "127.0.0.1", limits: PoolLimits | None = None
) -> AsyncIterator[tuple[str, Bindery]]:
    """The backend served in this event loop on a free port: ``(base_url, bindery)``."""
    database = Database(db, limits)
    await database.open()
    bindery = Bindery(database)
    try:
        with listen(host, 0) as sock:
            server = _QuietServer(_config(BinderyApp(bindery)))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                while not server.started:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.005)
                yield _url(sock), bindery
            finally:
                server.should_exit = True
                await task
    finally:
        await database.close()
