"""``roundhouse up``: the gateway in the foreground, until SIGINT or SIGTERM.

The HTTP server (uvicorn) and the manager share one event loop. Shutdown order: stop taking
requests, then stop every instance (the manager's exit), then close the registry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from roundhouse import __version__, malloc
from roundhouse.api.app import create_app
from roundhouse.errors import RoundhouseError
from roundhouse.manager import AsyncManager
from roundhouse.settings import Settings
from roundhouse.spec import ServerSpec

__all__ = ["run_gateway", "serve"]

log = logging.getLogger("roundhouse")


def run_gateway(config_path: Path | None, overrides: dict[str, Any]) -> int:
    """Load settings and config, run until stopped; returns the process exit code."""
    given = {key: value for key, value in overrides.items() if value is not None}
    path = config_path or (
        Path(os.environ["ROUNDHOUSE_CONFIG"]) if os.environ.get("ROUNDHOUSE_CONFIG") else None
    )
    servers: list[ServerSpec] = []
    try:
        if path is not None:
            # Only with a config file: YAML and the file's schema are not needed otherwise.
            from roundhouse.config import load_config, settings_from_file

            config = load_config(path)
            settings = settings_from_file(config, **given)
            servers = list(config.servers)
        else:
            settings = Settings(**given)
    except RoundhouseError as exc:
        print(f"roundhouse: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"roundhouse: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    malloc.tune()
    try:
        asyncio.run(serve(settings, servers))
    except RoundhouseError as exc:
        print(f"roundhouse: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"roundhouse: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore_repeat(sig: int, frame: FrameType | None) -> None:
    """A stop signal during shutdown: the sequence is already bounded; let it finish."""


class _Server(uvicorn.Server):
    """uvicorn, telling the manager the moment a shutdown signal arrives, so that open
    streams (``logs -f``) end instead of holding the graceful shutdown up."""

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


async def serve(settings: Settings, servers: list[ServerSpec]) -> None:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio disables Nagle only on sockets whose proto says TCP,
    # and with Nagle on, every keep-alive request waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    # Listening before the URL is printed: a client that reads it may connect at once (the
    # connection waits in the backlog until uvicorn accepts).
    sock.listen(2048)
    port = sock.getsockname()[1]
    async with AsyncManager(settings, servers=servers) as manager:
        app = create_app(manager, port=port)
        config = uvicorn.Config(
            app,
            interface="asgi3",
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config, on_exit=manager.closing.set)
        host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
        base = f"http://{host}:{port}"
        print(
            f"Roundhouse {__version__} listening on {base}\n"
            f"  API:      {base}/api  (OpenAPI: {base}/openapi.json)\n"
            f"  data dir: {settings.data_dir}",
            flush=True,
        )
        # uvicorn re-raises the signal that stopped it to whatever handler was there before;
        # make that a no-op, so the manager still stops every instance before we exit.
        previous = {sig: signal.signal(sig, _ignore_repeat) for sig in _STOP_SIGNALS}
        try:
            await server.serve(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("stopping every instance")
