"""The Bindery MCP face: a lean stdio MCP server with the 14 task tools, in front of the
Bindery backend, which it launches and watches (docs/BINDERY.md).

Importing this package is cheap; :func:`main` loads the server, the client and the process
runtime only when it runs.
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Serve MCP on stdin/stdout (``python -m roundhouse.bindery.face``, ``roundhouse bindery
    mcp``); settings come from the environment (see ``settings.py``)."""
    from roundhouse.bindery.face.app import main as run

    run()
