"""``python -m roundhouse.bindery.face``: the Bindery MCP face on stdin/stdout."""

from __future__ import annotations

from roundhouse.bindery.face.app import main

main()
