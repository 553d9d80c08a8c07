"""The REST face and the HTTP edge: a raw ASGI app (no framework routing, no dependency
injection: this path is measured in microseconds) over :class:`Bindery`.

It owns what only HTTP has: routing, status codes, the 1 MiB body limit (a declared
``Content-Length`` is refused before reading; a chunked body is counted as it arrives), JSON
content type for bodies (so that a web page cannot post a form to a local Bindery), query
strings (unknown or repeated keys are a 422), and the one place where an exception becomes an
HTTP error ``{"error": {"code", "message"}}``. The routes are the table in ``docs/BINDERY.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from roundhouse.bindery.backend import rpc
from roundhouse.bindery.backend.errors import (
    BinderyError,
    Invalid,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
)
from roundhouse.bindery.backend.models import MAX_ID
from roundhouse.bindery.backend.service import Bindery

__all__ = ["MAX_BODY", "BinderyApp"]

log = logging.getLogger("roundhouse.bindery")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY = 1024 * 1024
MAX_QUERY_FIELDS = 10
_JSON = (b"content-type", b"application/json")


class _Request:
    __slots__ = ("body", "method", "query")

    def __init__(self, method: str, query: dict[str, str], body: bytes) -> None:
        self.method = method
        self.query = query
        self.body = body


class _Gone(Exception):
    """The client went away before its body arrived: nobody to answer."""


class BinderyApp:
    def __init__(self, bindery: Bindery) -> None:
        self.bindery = bindery

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        status, payload = 500, b""
        try:
            body = await _read_body(scope, receive)
            if path == "/rpc":
                status, payload = await self._rpc(scope, body)
            else:
                status, result = await self._rest(scope, path, body)
                payload = b"" if status == 204 else orjson.dumps(result)
        except _Gone:
            return
        except BinderyError as exc:
            status = exc.status
            if path == "/rpc":
                wire = rpc.error_response(None, exc.rpc_code, exc.message, exc.to_wire())
                payload = orjson.dumps(wire)
            else:
                payload = orjson.dumps({"error": exc.to_wire()})
        except Exception:
            log.exception("bindery: %s %s failed", scope["method"], path)
            payload = orjson.dumps({"error": {"code": "internal", "message": "internal error"}})
        headers = [_JSON, (b"content-length", str(len(payload)).encode())] if payload else []
        if status == 405:
            headers.append((b"allow", b", ".join(_ALLOWED.get(_shape(path), ()))))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _rpc(self, scope: Scope, body: bytes) -> tuple[int, bytes]:
        if scope["method"] != "POST":
            raise MethodNotAllowed("use POST for JSON-RPC")
        _require_json(scope, body)
        answer = await rpc.handle(self.bindery, body)
        return (204, b"") if answer is None else (200, answer)

    async def _rest(self, scope: Scope, path: str, body: bytes) -> tuple[int, Any]:
        method: str = scope["method"]
        shape = _shape(path)
        allowed = _ALLOWED.get(shape)
        if allowed is None:
            raise NotFound("no such route")
        if method.encode() not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here")
        if body:
            _require_json(scope, body)
        request = _Request(method, _query(scope["query_string"]), body)
        parts = path.split("/")
        call = self.bindery.call
        if shape == "/health":
            answering, health = await self.bindery.health()
            return (200 if answering else 503), health
        if shape == "/api/pool/metrics":
            _no_input(request)
            return 200, self.bindery.pool_metrics()
        if shape == "/api/pool/health":
            _no_input(request)
            return 200, self.bindery.pool_health()
        if shape == "/api/tasks":
            if method == "POST":
                _no_query(request)
                return 201, await call("create_task", _body(request))
            return 200, await call("list_tasks", _list_params(request.query))
        if shape == "/api/tasks/ready":
            _no_body(request)
            return 200, await call("get_ready_tasks", _ints(request.query, "limit"))
        if shape == "/api/search":
            _no_body(request)
            params = _ints(request.query, "limit", allowed=("q",))
            if "q" in params:
                params["query"] = params.pop("q")
            return 200, await call("search_tasks", params)
        if shape == "/api/stats":
            _no_input(request)
            return 200, await call("get_stats", {})
        task_id = _path_id(parts[3])
        tail = parts[4] if len(parts) > 4 else ""
        if shape == "/api/tasks/{id}":
            if method == "GET":
                _no_input(request)
                return 200, await call("get_task", {"task_id": task_id})
            if method == "PATCH":
                _no_query(request)
                return 200, await call(
                    "update_task", {"task_id": task_id, "updates": _body(request)}
                )
            _no_body(request)
            cascade = _flag(request.query, "cascade")
            await call("delete_task", {"task_id": task_id, "cascade": cascade})
            return 204, None
        if tail == "complete":
            _no_input(request)
            return 200, await call("complete_task", {"task_id": task_id})
        if tail == "subtasks":
            _no_query(request)
            return 201, await call("add_subtask", _body_with(request, "parent_id", task_id))
        if tail == "tree":
            _no_body(request)
            params = _ints(request.query, "max_depth")
            return 200, await call("get_task_tree", {"task_id": task_id, **params})
        if tail == "comments":
            if method == "GET":
                _no_input(request)
                return 200, await call("list_comments", {"task_id": task_id})
            _no_query(request)
            return 201, await call("add_comment", _body_with(request, "task_id", task_id))
        if shape == "/api/tasks/{id}/dependencies":
            _no_query(request)
            return 201, await call("add_dependency", _body_with(request, "task_id", task_id))
        _no_input(request)
        params = {"task_id": task_id, "depends_on": _path_id(parts[5])}
        return 200, await call("remove_dependency", params)


_ALLOWED: dict[str, tuple[bytes, ...]] = {
    "/health": (b"GET",),
    "/api/pool/metrics": (b"GET",),
    "/api/pool/health": (b"GET",),
    "/api/tasks": (b"GET", b"POST"),
    "/api/tasks/ready": (b"GET",),
    "/api/search": (b"GET",),
    "/api/stats": (b"GET",),
    "/api/tasks/{id}": (b"GET", b"PATCH", b"DELETE"),
    "/api/tasks/{id}/complete": (b"POST",),
    "/api/tasks/{id}/subtasks": (b"POST",),
    "/api/tasks/{id}/tree": (b"GET",),
    "/api/tasks/{id}/dependencies": (b"POST",),
    "/api/tasks/{id}/dependencies/{id}": (b"DELETE",),
    "/api/tasks/{id}/comments": (b"GET", b"POST"),
    "/rpc": (b"POST",),
}


def _shape(path: str) -> str:
    """The route a path has the shape of: ids (any segment after ``tasks`` or a dependency)
    become ``{id}`` so that a bad id is answered by the route (422/404), not as no route."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] == "api" and parts[2] == "tasks" and parts[3] != "ready":
        parts[3] = "{id}"
        if len(parts) == 6 and parts[4] == "dependencies":
            parts[5] = "{id}"
    return "/".join(parts)


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
            raise TooLarge(f"the body is over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"the body is over {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _require_json(scope: Scope, body: bytes) -> None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.split(b";", 1)[0].strip().lower() == b"application/json":
                return
            break
    raise UnsupportedMediaType("a body must be sent as application/json")


def _query(raw: bytes) -> dict[str, str]:
    if not raw:
        return {}
    try:
        pairs = parse_qsl(
            raw.decode("latin-1"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the query string cannot be read") from None
    query = dict(pairs)
    if len(query) != len(pairs):
        raise Invalid("a query parameter is given twice")
    return query


def _body(request: _Request) -> dict[str, Any]:
    if not request.body:
        raise Invalid("a JSON object body is required")
    try:
        value = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise Invalid("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Invalid("the body must be a JSON object")
    return value


def _body_with(request: _Request, key: str, value: int) -> dict[str, Any]:
    """The body plus the id the path gives (the body may not give it again)."""
    body = _body(request)
    if key in body:
        raise Invalid(f"{key} comes from the path, not the body")
    body[key] = value
    return body


def _no_body(request: _Request) -> None:
    if request.body and _body(request):
        raise Invalid("this route takes no body")


def _no_query(request: _Request) -> None:
    if request.query:
        raise Invalid(f"unknown query parameter {sorted(request.query)[0]!r}"[:100])


def _no_input(request: _Request) -> None:
    _no_body(request)
    _no_query(request)


def _path_id(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise Invalid("a task id must be a positive integer")
    if len(text) > 10 or not 1 <= int(text) <= MAX_ID:
        raise NotFound(f"task {text} not found")
    return int(text)


def _integer(name: str, value: str) -> int:
    if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 12:
        raise Invalid(f"{name} must be an integer")
    return int(value)


def _ints(query: dict[str, str], *names: str, allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in query.items():
        if key in names:
            params[key] = _integer(key, value)
        elif key in allowed:
            params[key] = value
        else:
            raise Invalid(f"unknown query parameter {key!r}"[:100])
    return params


def _list_params(query: dict[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    params: dict[str, Any] = {"filters": filters}
    for key, value in query.items():
        if key in ("limit", "offset"):
            params[key] = _integer(key, value)
        elif key == "parent_id":
            filters[key] = "none" if value == "none" else _integer(key, value)
        elif key in ("status", "priority", "tag", "q"):
            filters[key] = value
        else:
            raise Invalid(f"unknown query parameter {key!r}"[:100])
    return params


def _flag(query: dict[str, str], name: str) -> bool:
    for key in query:
        if key != name:
            raise Invalid(f"unknown query parameter {key!r}"[:100])
    value = query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise Invalid(f"{name} must be true or false")
    return value in ("true", "1")
