"""The Bindery MCP face: a lean stdio MCP server, newline-delimited JSON-RPC parsed with orjson.

Not the SDK's server: over a bare pipe the SDK's serves about 1,600 requests a second and a
hand-written loop about 21,000, and the face sits on the gateway's hot path. It speaks both eras:

    legacy   initialize (2025-03-26, 2025-06-18, 2025-11-25), notifications/initialized, ping,
             tools/list, tools/call, logging/setLevel
    modern   server/discover, and requests carrying ``params._meta`` with the 2026-07-28
             version: their results carry ``resultType`` (and ``ttlMs``/``cacheScope`` on lists)

Behaviour on the wire:

- Every ``tools/call`` runs in its own task; answers go out as they complete, in any order.
  ``notifications/cancelled`` cancels the matching call, which then gets no answer.
- A line that is not JSON gets -32700 with a null id, a batch or a non-request -32600, an unknown
  method -32601; a line over 16 MiB fails alone, with whatever id its ends show. None of them
  stops the server.
- stdout carries only protocol; logs go to stderr.
- At the end of input, calls in flight get :data:`EOF_GRACE` seconds to answer, then the backend
  is stopped and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import orjson

from roundhouse.bindery.face.calls import ToolRunner, UnknownTool
from roundhouse.protocol.eras import (
    DISCOVER_METHOD,
    INITIALIZE_METHOD,
    INITIALIZED_NOTIFICATION,
    MODERN_VERSIONS,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from roundhouse.protocol.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    make_error,
    recover_id,
)

__all__ = ["CAPABILITIES", "LEGACY_VERSIONS", "SERVER_INFO", "McpServer"]

log = logging.getLogger(__name__)

#: The handshake-era versions the face negotiates, oldest first.
LEGACY_VERSIONS: Final = ("2025-03-26", "2025-06-18", "2025-11-25")
SERVER_INFO: Final = {"name": "bindery", "title": "Bindery tasks", "version": "0.1.0"}
CAPABILITIES: Final = {"tools": {"listChanged": False}, "logging": {}}
MODERN_CAPABILITIES: Final = {"tools": {"listChanged": False}}
INSTRUCTIONS: Final = (
    "Bindery keeps tasks: create, update, nest (subtasks), link (dependencies), comment,"
    " search and complete them. get_ready_tasks lists what can be worked on now."
)
LOG_LEVELS: Final = frozenset(
    {"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}
)
#: The tool list never changes while the process runs: modern clients may keep it this long.
TOOLS_TTL_MS: Final = 300_000
#: Calls in flight above which the server stops reading until half of them are done.
MAX_IN_FLIGHT: Final = 512
#: Seconds calls in flight at the end of input still get to answer.
EOF_GRACE: Final = 2.0

_COMPLETE: Final = {"resultType": "complete"}


class McpServer:
    """Answers MCP messages, one line at a time; ``write`` gets each encoded answer line.

    ``pause``/``resume`` (optional) are told when too many calls are in flight, so a client that
    floods the server is slowed down instead of buffering without end.
    """

    def __init__(
        self,
        runner: ToolRunner,
        write: Callable[[bytes], None],
        *,
        pause: Callable[[], None] | None = None,
        resume: Callable[[], None] | None = None,
    ) -> None:
        self._runner = runner
        self._write = write
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._calls: dict[int | str, asyncio.Task[None]] = {}
        self.log_level = "info"
        self.initialized = False
        tools = runner.definitions
        self._legacy_tools = {"tools": tools}
        self._modern_tools = {
            "tools": tools,
            "resultType": "complete",
            "ttlMs": TOOLS_TTL_MS,
            "cacheScope": "public",
        }

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    # --- input ------------------------------------------------------------------------------------

    def on_line(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                self._send(make_error(None, PARSE_ERROR, "Parse error: the line is not JSON"))
            return
        if not isinstance(message, dict):
            reason = "batches are not supported" if isinstance(message, list) else "not an object"
            self._send(make_error(None, INVALID_REQUEST, f"Invalid request: {reason}"))
            return
        method = message.get("method")
        if "id" not in message:
            if isinstance(method, str):
                self._notification(method, message.get("params"))
            return  # a response or a stray message: the face never sends requests
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, int | str):
            self._send(make_error(None, INVALID_REQUEST, "Invalid request: bad id"))
            return
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
            self._send(make_error(request_id, INVALID_REQUEST, "Invalid request: not JSON-RPC 2.0"))
            return
        params = message.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            self._send(make_error(request_id, INVALID_PARAMS, "params must be an object"))
            return
        self._request(request_id, method, params)

    def on_oversize(self, head: bytes, tail: bytes) -> None:
        request_id = recover_id(head, tail)
        self._send(make_error(request_id, INVALID_REQUEST, "Invalid request: message too large"))

    # --- requests ---------------------------------------------------------------------------------

    def _request(self, request_id: int | str, method: str, params: dict[str, Any]) -> None:
        meta = params.get("_meta")
        version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        modern = version is not None
        if modern and version not in MODERN_VERSIONS:
            self._send(
                make_error(
                    request_id,
                    UNSUPPORTED_PROTOCOL_VERSION,
                    f"Unsupported protocol version: {str(version)[:32]!r}",
                    {"supported": [*MODERN_VERSIONS, *LEGACY_VERSIONS]},
                )
            )
            return
        if method == "tools/call":
            self._start_call(request_id, params, modern)
            return
        if method == "ping":
            result: dict[str, Any] = dict(_COMPLETE) if modern else {}
        elif method == "tools/list":
            result = self._modern_tools if modern else self._legacy_tools
        elif method == INITIALIZE_METHOD:
            result = self._initialize(params)
        elif method == DISCOVER_METHOD:
            result = _discover()
        elif method == "logging/setLevel":
            level = params.get("level")
            if level not in LOG_LEVELS:
                self._send(make_error(request_id, INVALID_PARAMS, "Unknown log level"))
                return
            self.log_level = level
            result = dict(_COMPLETE) if modern else {}
        else:
            self._send(make_error(request_id, METHOD_NOT_FOUND, f"Method not found: {method[:64]}"))
            return
        self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = asked if asked in LEGACY_VERSIONS else LEGACY_VERSIONS[-1]
        return {
            "protocolVersion": version,
            "capabilities": CAPABILITIES,
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }

    def _notification(self, method: str, params: Any) -> None:
        if method == INITIALIZED_NOTIFICATION:
            self.initialized = True
        elif method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            task = self._calls.get(request_id) if isinstance(request_id, int | str) else None
            if task is not None:
                task.cancel()

    # --- calls ------------------------------------------------------------------------------------

    def _start_call(self, request_id: int | str, params: dict[str, Any], modern: bool) -> None:
        if request_id in self._calls:
            self._send(make_error(request_id, INVALID_REQUEST, "Request id already in flight"))
            return
        task = asyncio.create_task(self._call(request_id, params, modern))
        self._calls[request_id] = task
        task.add_done_callback(lambda _: self._finished(request_id))
        if len(self._calls) >= MAX_IN_FLIGHT and not self._paused and self._pause is not None:
            self._paused = True
            self._pause()

    async def _call(self, request_id: int | str, params: dict[str, Any], modern: bool) -> None:
        try:
            result = await self._runner.call(params.get("name"), params.get("arguments"))
        except asyncio.CancelledError:
            return  # cancelled by the client (no answer is due) or by shutdown
        except UnknownTool as exc:
            self._send(make_error(request_id, INVALID_PARAMS, exc.message))
            return
        if modern:
            result["resultType"] = "complete"
        self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _finished(self, request_id: int | str) -> None:
        self._calls.pop(request_id, None)
        if self._paused and len(self._calls) <= MAX_IN_FLIGHT // 2 and self._resume is not None:
            self._paused = False
            self._resume()

    async def drain(self, grace: float = EOF_GRACE) -> None:
        """Give calls in flight ``grace`` seconds to answer, then cancel the rest."""
        if self._calls:
            await asyncio.wait(list(self._calls.values()), timeout=grace)
        leftover = list(self._calls.values())
        for task in leftover:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*leftover, return_exceptions=True)

    def _send(self, message: dict[str, Any]) -> None:
        self._write(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))


def _discover() -> dict[str, Any]:
    return {
        "supportedVersions": [*MODERN_VERSIONS, *LEGACY_VERSIONS],
        "capabilities": MODERN_CAPABILITIES,
        "instructions": INSTRUCTIONS,
        "resultType": "complete",
        "ttlMs": TOOLS_TTL_MS,
        "cacheScope": "public",
        "_meta": {SERVER_INFO_META_KEY: SERVER_INFO},
    }
