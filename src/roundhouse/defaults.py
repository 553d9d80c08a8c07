"""What a fresh data dir starts with: the bundled Bindery task server, deployed as ``bindery``.

A new user's first ``roundhouse up`` should serve something real, so the first gateway to open a
data dir registers Bindery there and leaves a marker file. The marker, not the server's row,
records that the defaults were applied: a user who removes ``bindery`` keeps it removed, and a
data dir that already holds servers from an earlier version is not touched (the marker is missing
there too, so it is written without adding anything when the registry already has servers).

``ROUNDHOUSE_BINDERY=false`` (``Settings.bindery``) skips all of this.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from roundhouse.settings import Settings
from roundhouse.spec import ServerSpec
from roundhouse.store import Store

__all__ = ["BINDERY_SLUG", "MARKER_NAME", "apply_defaults", "bindery_spec"]

log = logging.getLogger(__name__)

BINDERY_SLUG = "bindery"
MARKER_NAME = "defaults-applied"


def bindery_spec(data_dir: Path) -> ServerSpec:
    """Bindery's MCP face as a stdio server; it launches its own backend on a free port.

    The command is this interpreter, so the server runs from the same environment as the
    gateway whatever ``PATH`` holds; its database lives in the data dir beside the registry.
    """
    return ServerSpec.model_validate(
        {
            "slug": BINDERY_SLUG,
            "name": "Bindery tasks",
            "tags": ["bundled"],
            "transport": {
                "type": "stdio",
                "command": sys.executable,
                "args": ["-m", "roundhouse.bindery.face"],
                "env": {"BINDERY_DB": str(data_dir / "bindery" / "bindery.db")},
            },
            # The face waits for its backend's /health before it answers initialize.
            "timeouts": {"start": 60.0},
        }
    )


async def apply_defaults(store: Store, settings: Settings) -> list[str]:
    """Register the default servers once per data dir; returns the slugs it added."""
    marker = settings.data_dir / MARKER_NAME
    if not settings.bindery or marker.exists():
        return []
    added: list[str] = []
    if not await store.list_servers():
        await store.upsert_server(bindery_spec(settings.data_dir))
        added.append(BINDERY_SLUG)
        log.info("deployed the bundled Bindery server as %r", BINDERY_SLUG)
    _write_marker(marker)
    return added


def _write_marker(marker: Path) -> None:
    """Durably: the registry row is committed first, so a crash in between re-adds nothing."""
    tmp = marker.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write("bindery\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, marker)
    dir_fd = os.open(marker.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
