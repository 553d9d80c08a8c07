"""The JSON-RPC 2.0 face (``POST /rpc``): requests and batches onto :meth:`Bindery.call`.

Parse errors are -32700; a request that is not a JSON-RPC 2.0 request object (or an empty batch,
or one over :data:`MAX_BATCH`) is -32600; an unknown method -32601; params that are not an object
or do not fit the method -32602. The service's own errors keep their code in ``data.code`` (as
in REST): not found -32004, conflict -32009, unavailable -32003. Notifications (no ``id``) run
and get no answer; a request of notifications only is answered with no content.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from roundhouse.bindery.backend.errors import BinderyError
from roundhouse.bindery.backend.service import METHODS, Bindery

__all__ = ["MAX_BATCH", "error_response", "handle"]

log = logging.getLogger("roundhouse.bindery")
MAX_BATCH = 100
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


def error_response(
    request_id: Any, code: int, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


async def handle(bindery: Bindery, body: bytes) -> bytes | None:
    """The answer to one POST body, or None when nothing is to be answered."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps(error_response(None, PARSE_ERROR, "parse error: not valid JSON"))
    if isinstance(message, list):
        if not message:
            return orjson.dumps(error_response(None, INVALID_REQUEST, "an empty batch"))
        if len(message) > MAX_BATCH:
            return orjson.dumps(
                error_response(None, INVALID_REQUEST, f"a batch holds at most {MAX_BATCH} requests")
            )
        answers = [answer for item in message if (answer := await _one(bindery, item))]
        return orjson.dumps(answers) if answers else None
    answer = await _one(bindery, message)
    return orjson.dumps(answer) if answer is not None else None


async def _one(bindery: Bindery, message: Any) -> dict[str, Any] | None:
    if not isinstance(message, dict):
        return error_response(None, INVALID_REQUEST, "a request must be a JSON object")
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int)
    ):
        return error_response(None, INVALID_REQUEST, "id must be a string, a number or null")
    method = message.get("method")
    if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return error_response(
            request_id, INVALID_REQUEST, 'a request needs "jsonrpc": "2.0" and a method name'
        )
    notification = "id" not in message
    params = message.get("params", {})
    if method not in METHODS:
        answer = error_response(request_id, METHOD_NOT_FOUND, "method not found")
    elif not isinstance(params, dict):
        answer = error_response(
            request_id, INVALID_PARAMS, "params must be an object", {"code": "invalid"}
        )
    else:
        try:
            result = await bindery.call(method, params)
            answer = {"jsonrpc": "2.0", "id": request_id, "result": result}
        except BinderyError as exc:
            answer = error_response(request_id, exc.rpc_code, exc.message, exc.to_wire())
        except Exception:
            log.exception("bindery: %s failed", method)
            answer = error_response(request_id, INTERNAL_ERROR, "internal error")
    return None if notification else answer
