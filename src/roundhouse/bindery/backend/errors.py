"""The backend's errors: one base class, each kind carrying its REST status, its code in the
contract and its JSON-RPC code, so REST and JSON-RPC turn the same exception into their own wire
error in one place each (:mod:`.http` and :mod:`.rpc`).

::

    BinderyError
     ├── Invalid        422  invalid       -32602
     ├── NotFound       404  not_found     -32004
     ├── Conflict       409  conflict      -32009
     ├── TooLarge       413  too_large     -32600
     ├── Unavailable    503  unavailable   -32003
     ├── MethodNotAllowed  405  method_not_allowed  -32600
     └── UnsupportedMediaType  415  unsupported_media_type  -32600

A message is written for the caller: it never holds SQL, a path or a stack.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BinderyError",
    "Conflict",
    "Invalid",
    "MethodNotAllowed",
    "NotFound",
    "TooLarge",
    "Unavailable",
    "UnsupportedMediaType",
]


class BinderyError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    rpc_code: ClassVar[int] = -32603

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        """The contract's ``{"code", "message"}`` (plus ``details`` for field errors)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class Invalid(BinderyError):
    status = 422
    code = "invalid"
    rpc_code = -32602


class NotFound(BinderyError):
    status = 404
    code = "not_found"
    rpc_code = -32004


class Conflict(BinderyError):
    status = 409
    code = "conflict"
    rpc_code = -32009


class TooLarge(BinderyError):
    status = 413
    code = "too_large"
    rpc_code = -32600


class Unavailable(BinderyError):
    status = 503
    code = "unavailable"
    rpc_code = -32003


class MethodNotAllowed(BinderyError):
    status = 405
    code = "method_not_allowed"
    rpc_code = -32600


class UnsupportedMediaType(BinderyError):
    status = 415
    code = "unsupported_media_type"
    rpc_code = -32600
