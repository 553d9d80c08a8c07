"""A tool call from arguments to result: check, call the backend, shape, or a clear tool error.

The one place where errors become what a client reads. Every failure of a known tool is a tool
error (``isError: true``) whose text depends on the mode:

    development   the detail, through :func:`~roundhouse.security.redact.redact`
                  (no paths, credentials, addresses or ports)
    production    a generic sentence for the kind of failure (MCP_PRODUCTION=true)

Only an unknown tool name is a protocol error (the caller named something that does not exist).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from roundhouse.bindery.face.client import BackendFailed, BackendRejected, BinderyClient
from roundhouse.bindery.face.tools import TOOLS, Tool
from roundhouse.errors import InvalidInput, RoundhouseError
from roundhouse.resilience import CircuitOpenError
from roundhouse.security.redact import public_error
from roundhouse.upstream.pooled import (
    BackendTimeout,
    BackendUnavailable,
    RequestTooLarge,
    ResponseTooLarge,
)

__all__ = ["ToolRunner", "UnknownTool"]

log = logging.getLogger(__name__)

#: Generic messages by kind of failure, shown in production mode.
INVALID: Final = "Invalid arguments."
NOT_FOUND: Final = "Not found."
CONFLICT: Final = "The request conflicts with the current tasks."
UNAVAILABLE: Final = "Bindery backend unavailable; retry later."
INTERNAL: Final = "Internal error."
_BY_STATUS: Final = {404: NOT_FOUND, 409: CONFLICT}


class UnknownTool(InvalidInput):
    """No tool of that name: a protocol error (-32602), not a tool error."""


class ToolRunner:
    """Runs the 14 tools against a :class:`BinderyClient`.

    ``ready`` is awaited before a call reaches the backend: the launched backend's first start
    (bounded by the startup timeout); after that it returns at once.
    """

    def __init__(
        self,
        client: BinderyClient,
        *,
        production: bool = False,
        timeout: float = 30.0,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.production = production
        self.timeout = timeout
        self._ready = ready
        self.definitions: list[dict[str, Any]] = [tool.definition() for tool in TOOLS.values()]

    async def call(self, name: Any, arguments: Any) -> dict[str, Any]:
        """The ``tools/call`` result; raises UnknownTool for a name that is not a tool."""
        tool = TOOLS.get(name) if isinstance(name, str) else None
        if tool is None:
            shown = repr(name[:64]) if isinstance(name, str) else "a non-string"
            raise UnknownTool(f"Unknown tool: {shown}")
        try:
            clean = tool.parse(arguments)
            request = tool.build(clean)  # may refuse what only fails as a whole: an empty update
            if self._ready is not None:
                await self._ready()
            body = await self.client.call(tool, clean, request)
            structured = tool.shape(body, clean)
        except RoundhouseError as exc:
            return self._error(tool, exc)
        except Exception:
            log.exception("tool %s failed unexpectedly", tool.name)
            return self._error(tool, RoundhouseError("unexpected failure in the Bindery face"))
        text = orjson.dumps(structured).decode()
        return {
            "content": [{"type": "text", "text": text}],
            "structuredContent": structured,
            "isError": False,
        }

    def _error(self, tool: Tool, exc: RoundhouseError) -> dict[str, Any]:
        detail, generic = self._describe(tool, exc)
        message = public_error(detail, production=self.production, generic=generic)
        return {"content": [{"type": "text", "text": message}], "isError": True}

    def _describe(self, tool: Tool, exc: RoundhouseError) -> tuple[str, str]:
        """``(detailed message, generic message)`` for a failure."""
        if isinstance(exc, CircuitOpenError):
            wait = max(1, math.ceil(exc.retry_after))
            # Says nothing about the backend but that it is down: the same in both modes.
            message = f"Bindery backend unavailable; retry in {wait} s"
            return message, message
        if isinstance(exc, InvalidInput):
            return f"Invalid arguments for {tool.name}: {exc.message}", INVALID
        if isinstance(exc, BackendRejected):
            generic = _BY_STATUS.get(exc.status, INVALID)
            return f"{tool.name}: {exc.message}", generic
        if isinstance(exc, RequestTooLarge):
            return f"Invalid arguments for {tool.name}: the request is too large", INVALID
        if isinstance(exc, BackendUnavailable):
            return f"Bindery backend unavailable ({exc.message}); retry later", UNAVAILABLE
        if isinstance(exc, BackendTimeout):
            return (
                f"Bindery backend did not answer within {self.timeout:g} s; retry later",
                UNAVAILABLE,
            )
        if isinstance(exc, ResponseTooLarge):
            return f"{tool.name}: the answer is too large to return", INTERNAL
        if isinstance(exc, BackendFailed):
            return f"{tool.name}: {exc.message}", UNAVAILABLE
        return f"{tool.name}: {exc.message}", INTERNAL
