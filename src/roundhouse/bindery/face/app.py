"""The face as a process: settings, the backend (launched or reached), the client, the server.

``main()`` is what ``python -m roundhouse.bindery.face`` and ``roundhouse bindery mcp`` run. It
serves until stdin ends or SIGTERM/SIGINT arrives, then shuts down in a fixed order that
cancellation cannot interrupt: calls in flight get a grace period, the written answers are
flushed, the backend is stopped (SIGTERM, then SIGKILL), the client's connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from pydantic import ValidationError

from roundhouse.bindery.face.backend import BackendManager
from roundhouse.bindery.face.calls import ToolRunner
from roundhouse.bindery.face.client import BinderyClient
from roundhouse.bindery.face.server import EOF_GRACE, McpServer
from roundhouse.bindery.face.settings import FaceSettings
from roundhouse.bindery.face.wire import LineSplitter, StdioWire

__all__ = ["main", "run"]

log = logging.getLogger(__name__)


async def run(settings: FaceSettings) -> None:
    """Serve MCP on stdin/stdout until the input ends or a stop signal arrives."""
    manager = BackendManager(settings) if settings.mcp_auto_launch_backend else None
    client = BinderyClient(
        manager.url if manager is not None else settings.bindery_url,
        timeout=settings.bindery_timeout,
        cache_ttl=settings.bindery_cache_ttl,
        breaker_failures=settings.bindery_breaker_failures,
        breaker_recovery=settings.bindery_breaker_recovery,
    )

    def backend_ready(url: str) -> None:
        client.rebind(url)
        client.backend_recovered()

    runner = ToolRunner(
        client,
        production=settings.mcp_production,
        timeout=settings.bindery_timeout,
        ready=manager.wait_first_start if manager is not None else None,
    )
    wire = StdioWire()
    server = McpServer(runner, wire.write, pause=wire.pause_reading, resume=wire.resume_reading)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher: asyncio.Task[None] | None = None
    try:
        if manager is not None:
            manager.start(backend_ready)
        else:
            watcher = asyncio.create_task(client.watch_health())
        await wire.open(LineSplitter(server.on_line, server.on_oversize))
        ended = asyncio.create_task(wire.eof.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        stopped.cancel()
    finally:
        # Shutdown must finish even if we are cancelled, or the backend would outlive us; every
        # wait inside is bounded.
        await asyncio.shield(_shutdown(server, wire, manager, client, watcher))


async def _shutdown(
    server: McpServer,
    wire: StdioWire,
    manager: BackendManager | None,
    client: BinderyClient,
    watcher: asyncio.Task[None] | None,
) -> None:
    await server.drain(EOF_GRACE)
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await wire.close()
    if manager is not None:
        await manager.stop()
    await client.aclose()


def main() -> None:
    """Entry point: read the settings from the environment and serve."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s bindery-face %(levelname)s %(message)s",
    )
    # httpx logs every request at INFO: one line per tool call would drown the log.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        settings = FaceSettings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            sys.stderr.write(f"bindery face: {where}: {error['msg']}\n")
        raise SystemExit(2) from None
    asyncio.run(run(settings))
