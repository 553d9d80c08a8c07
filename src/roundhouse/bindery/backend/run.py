"""The process entry: settings checked, logging set up, :func:`serve` run, errors turned into one
line on stderr and an exit status (2 for bad settings, 1 when the service cannot start)."""

from __future__ import annotations

import asyncio
import logging
import sys

from roundhouse.bindery.backend.database import parse_target
from roundhouse.bindery.backend.errors import BinderyError
from roundhouse.bindery.backend.serve import serve

__all__ = ["run"]


def run(db: str, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> int:
    if not 0 <= port <= 65535:
        print("bindery: --port must be 0-65535", file=sys.stderr)
        return 2
    try:
        parse_target(db)
    except ValueError as exc:
        print(f"bindery: {exc}", file=sys.stderr)
        return 2
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        print("bindery: --log-level must be debug, info, warning or error", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        asyncio.run(serve(db, host=host, port=port))
    except BinderyError as exc:
        print(f"bindery: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bindery: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
