"""``roundhouse stdio``: Roundhouse as a desktop client's stdio MCP server.

One line in the client's config launches everything: the control plane comes up in this
process, the servers of ``--config`` (a Roundhouse config or the client's own ``mcpServers``
file) are registered and started, and the client is served on stdin/stdout, every server's
tools namespaced. When the client goes (end of input, a closed stdout), or on SIGTERM or
SIGINT, every server is stopped and the process exits 0. ``kill -9`` leaves nothing either:
the process runtime's watchdog stops the servers.

stdout carries JSON-RPC only: logging goes to stderr, and the HTTP server (the dashboard, the
REST API, ``/mcp``) runs only when ``--http-port`` asks for it, on 127.0.0.1. A desktop client
waits for this process to answer ``initialize``, so nothing heavy is imported before it is
needed (FastAPI and uvicorn only with ``--http-port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

if TYPE_CHECKING:
    import uvicorn

    from roundhouse.gateway.frontends.stdio import StdioFrontend, StdioPipes
    from roundhouse.gateway.service import Gateway
    from roundhouse.manager import AsyncManager
    from roundhouse.settings import Settings
    from roundhouse.spec import ServerSpec

__all__ = ["run_stdio", "stdio"]

log = logging.getLogger("roundhouse")

#: Seconds the first requests wait for the servers that start with the gateway to be listed.
STARTUP_WAIT: Final = 15.0
#: Seconds the HTTP server gets to finish its requests at shutdown.
HTTP_SHUTDOWN_TIMEOUT: Final = 5.0
LOOPBACK: Final = "127.0.0.1"


def stdio(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="A YAML or JSON config, or a Claude Desktop mcpServers file."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the registry and logs live.")
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            min=0,
            max=65535,
            help="Also serve the dashboard, API and /mcp on 127.0.0.1:PORT (off by default).",
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error (stderr).")
    ] = None,
) -> None:
    """Serve MCP on stdin/stdout for a desktop client; the servers start and stop with it."""
    overrides: dict[str, Any] = {"data_dir": data_dir, "log_level": log_level}
    if http_port is not None:
        overrides.update(host=LOOPBACK, port=http_port)
    raise typer.Exit(run_stdio(config, overrides, http=http_port is not None))


def run_stdio(config_path: Path | None, overrides: dict[str, Any], *, http: bool = False) -> int:
    """Serve the client on stdin/stdout until it goes; returns the exit code."""
    from roundhouse import malloc
    from roundhouse.gateway.frontends.stdio import StdioPipes

    # First of all: from here on nothing but the wire reaches the client's stdout.
    pipes = StdioPipes.claim()
    malloc.tune()
    try:
        return asyncio.run(_main(pipes, config_path, overrides, http=http))
    finally:
        pipes.release()


async def _main(
    pipes: StdioPipes, config_path: Path | None, overrides: dict[str, Any], *, http: bool
) -> int:
    from roundhouse.gateway.frontends.stdio import StdioFrontend

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A second signal during shutdown changes nothing: the sequence is bounded.
        loop.add_signal_handler(sig, stop.set)
    pipes.start()
    # The client is answered from the start (``initialize`` needs no server); what reaches the
    # servers waits until the gateway is attached.
    frontend = StdioFrontend()
    serving = asyncio.create_task(frontend.serve(pipes.read, pipes.write), name="stdio serve")
    ended = asyncio.create_task(_first(serving, stop, pipes.broken), name="stdio ended")
    run = asyncio.create_task(_run(frontend, serving, ended, config_path, overrides, http=http))
    try:
        await asyncio.wait((run, ended), return_when=asyncio.FIRST_COMPLETED)
        if not run.done() and not frontend.attached:
            run.cancel()  # the client went (or a signal came) while starting up
        await asyncio.wait((run,))
        return 0 if run.cancelled() else run.result()
    finally:
        for task in (serving, ended):
            task.cancel()
        await asyncio.gather(serving, ended, return_exceptions=True)
        await pipes.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(
    frontend: StdioFrontend,
    serving: asyncio.Task[None],
    ended: asyncio.Task[None],
    config_path: Path | None,
    overrides: dict[str, Any],
    *,
    http: bool,
) -> int:
    # Importing the control plane and reading the config take a second or more: in a thread,
    # so that the loop answers the client meanwhile.
    loaded = await asyncio.to_thread(_load, config_path, overrides, http=http)
    if isinstance(loaded, int):
        return loaded
    settings, servers = loaded
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from roundhouse.errors import RoundhouseError
    from roundhouse.manager import AsyncManager

    try:
        async with AsyncManager(settings, servers=servers) as manager:
            frontend.attach(manager.gateway, startup=lambda: _servers_listed(manager, STARTUP_WAIT))
            web = await _start_http(manager) if http else None
            await ended
            manager.closing.set()
            # Calls end before their servers do: the client gets no "server closed" errors.
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            if web is not None:
                await _stop_http(*web)
            log.info("stopping every server")
    except RoundhouseError as exc:
        print(f"roundhouse: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"roundhouse: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _load(
    config_path: Path | None, overrides: dict[str, Any], *, http: bool
) -> tuple[Settings, list[ServerSpec]] | int:
    """Settings and the config's servers, or the exit code after saying what is wrong.

    Everything heavy is imported here, in a thread, so that the loop stays free for the client.
    """
    import importlib

    from roundhouse.config import load_config, settings_from_file
    from roundhouse.errors import RoundhouseError
    from roundhouse.settings import Settings

    for module in ("roundhouse.manager", *(("uvicorn", "roundhouse.api.app") if http else ())):
        importlib.import_module(module)
    given = {key: value for key, value in overrides.items() if value is not None}
    path = config_path or (
        Path(os.environ["ROUNDHOUSE_CONFIG"]) if os.environ.get("ROUNDHOUSE_CONFIG") else None
    )
    try:
        if path is None:
            return Settings(**given), []
        loaded = load_config(path)
        return settings_from_file(loaded, **given), list(loaded.servers)
    except RoundhouseError as exc:
        print(f"roundhouse: {exc.message}", file=sys.stderr)
    except OSError as exc:
        print(f"roundhouse: {path}: {exc.strerror or exc}", file=sys.stderr)
    except ValueError as exc:
        print(f"roundhouse: invalid settings: {exc}", file=sys.stderr)
    return 2


async def _first(serving: asyncio.Task[None], *events: asyncio.Event) -> None:
    """Return when the client went (end of input, a closed stdout) or a stop signal came."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait((serving, *waits), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()


async def _servers_listed(manager: AsyncManager, timeout: float) -> None:
    """Wait (bounded) until every instance that is starting has started or given up, and
    every running server's tools, prompts and resources are in the catalog."""
    from roundhouse.control.states import InstanceState

    starting = {InstanceState.PENDING, InstanceState.STARTING}
    gateway = manager.gateway
    try:
        async with asyncio.timeout(timeout):
            while any(
                worker.state in starting or (worker.ready and not _listed(gateway, worker.slug))
                for worker in manager.supervisor.all_workers()
            ):
                await asyncio.sleep(0.02)
    except TimeoutError:
        log.warning("some servers were not ready %.0f s after start; serving the others", timeout)


def _listed(gateway: Gateway, slug: str) -> bool:
    # The catalog has no public "has this server been listed" yet; see the report.
    return gateway.catalog.has_server(slug)


async def _start_http(manager: AsyncManager) -> tuple[uvicorn.Server, Any]:
    """The dashboard, REST API and MCP endpoints on 127.0.0.1, as ``up`` serves them."""
    import uvicorn

    from roundhouse.api.app import create_app

    class _Server(uvicorn.Server):
        """uvicorn without its own signal handling: this process's lifetime is the client's."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    settings = manager.settings
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, settings.port))
    sock.listen(2048)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(manager, port=port),
        interface="asgi3",
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=int(HTTP_SHUTDOWN_TIMEOUT),
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    log.info("HTTP API and dashboard on http://%s:%d", LOOPBACK, port)
    return server, task


async def _stop_http(server: uvicorn.Server, task: Any) -> None:
    server.should_exit = True
    try:
        await asyncio.wait_for(task, HTTP_SHUTDOWN_TIMEOUT + 1)
    except TimeoutError:
        server.force_exit = True
