"""One exception tree for all of Roundhouse, each error carrying its JSON-RPC code.

    RoundhouseError                      -32603  (base; anything unexpected)
    ├── InvalidInput                     -32602  bad spec, bad argument, bad config
    │   └── ConfigFileError                      a config file that cannot be used (names the line)
    ├── NotFound                         -32001  no such server or instance
    ├── Conflict                         -32002  slug already taken, port range exhausted
    ├── NotSupported                     -32003  an accepted name whose feature is not built yet
    ├── UpstreamError                    -32000  a server misbehaved or went away
    │   ├── UpstreamClosed                       the server's stream ended (exit, EOF)
    │   ├── UpstreamTimeout                      a wait on the server ran out (says which)
    │   └── UpstreamProtocolError                the server sent something that is not MCP
    └── StoreError                       -32004  the registry could not be read or written

``counts_as_failure`` says whether an error is news about a backend's health: a circuit breaker
counts it (the default), or not, for errors that mean "the backend answered: your request is
wrong" (``InvalidInput``, ``NotFound``, ``Conflict``, ``NotSupported``).

Foreign exceptions are mapped onto this tree where they enter (the runtime maps OSError from a
spawn, the stores map the database drivers' errors) and turned into wire errors in one place per
frontend (``api/errors.py`` for REST).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigFileError",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "NotSupported",
    "RoundhouseError",
    "StoreError",
    "UpstreamClosed",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
]


class RoundhouseError(Exception):
    """Base of every error Roundhouse raises on purpose."""

    code: int = -32603
    http_status: int = 500
    counts_as_failure: bool = True

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_jsonrpc(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidInput(RoundhouseError):
    code = -32602
    http_status = 422
    counts_as_failure = False

    def __init__(self, message: str, *, field: str | None = None, data: Any = None) -> None:
        super().__init__(message, data=data)
        self.field = field


class ConfigFileError(InvalidInput):
    """A config file that cannot be used; ``line`` is 1-based when known."""

    def __init__(self, path: str, message: str, *, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class NotFound(RoundhouseError):
    code = -32001
    http_status = 404
    counts_as_failure = False


class Conflict(RoundhouseError):
    code = -32002
    http_status = 409
    counts_as_failure = False


class NotSupported(RoundhouseError):
    code = -32003
    http_status = 422
    counts_as_failure = False


class UpstreamError(RoundhouseError):
    code = -32000
    http_status = 502


class UpstreamClosed(UpstreamError):
    """The server's stream ended: it exited, or closed stdout."""


class UpstreamTimeout(UpstreamError):
    http_status = 504


class UpstreamProtocolError(UpstreamError):
    """The server answered with something that is not MCP."""


class StoreError(RoundhouseError):
    code = -32004
    http_status = 503
