"""Roundhouse: a gateway and manager for MCP servers.

The public Python API::

    from roundhouse import Manager            # blocking, for scripts
    from roundhouse import AsyncManager       # for asyncio code
    from roundhouse import RemoteClient       # a running gateway, over its REST API
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from roundhouse import _native

# Before any other module of ours: a compiled module older than its source must not load.
_native.guard()

__version__ = "0.1.0"

__all__ = [
    "AsyncManager",
    "Health",
    "HealthStatus",
    "InstanceState",
    "Manager",
    "RemoteClient",
    "RoundhouseError",
    "ServerInfo",
    "ServerSpec",
    "Settings",
    "__version__",
]

if TYPE_CHECKING:
    from roundhouse.client import RemoteClient
    from roundhouse.control.states import Health, InstanceState
    from roundhouse.errors import RoundhouseError
    from roundhouse.manager import AsyncManager
    from roundhouse.python_api import HealthStatus, Manager, ServerInfo
    from roundhouse.settings import Settings
    from roundhouse.spec import ServerSpec

# Imported on first use: ``import roundhouse`` (and so the CLI) stays fast.
_LAZY = {
    "AsyncManager": "roundhouse.manager",
    "Health": "roundhouse.control.states",
    "HealthStatus": "roundhouse.python_api",
    "InstanceState": "roundhouse.control.states",
    "Manager": "roundhouse.python_api",
    "RemoteClient": "roundhouse.client",
    "RoundhouseError": "roundhouse.errors",
    "ServerInfo": "roundhouse.python_api",
    "ServerSpec": "roundhouse.spec",
    "Settings": "roundhouse.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'roundhouse' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
