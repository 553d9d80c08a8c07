"""The REST boundary for errors: every Roundhouse error becomes one JSON shape here.

    {"error": {"code": <JSON-RPC code>, "message": "...", "field": "transport.command" | null}}

Nothing else in the API builds an error body, and nothing unexpected leaks a traceback or a
secret: an exception that is not ours is logged and answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from roundhouse.errors import InvalidInput, RoundhouseError

__all__ = ["FastJSONResponse", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson (FastAPI's own orjson response class is deprecated)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_body(code: int, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, **extra}}


def _field_of(exc: RoundhouseError) -> str | None:
    if isinstance(exc, InvalidInput):
        return exc.field
    # NotSupported (an accepted name whose feature is not built yet) names its field in data.
    if isinstance(exc.data, dict) and isinstance(exc.data.get("field"), str):
        return str(exc.data["field"])
    return None


def _field_from_loc(error: dict[str, Any]) -> str:
    """``("query", "lines")`` → ``lines``; ``("body", "instances")`` → ``instances``. A body
    that is not JSON names the body (its loc carries a character offset, not a field)."""
    if error.get("type") == "json_invalid":
        return "body"
    loc = list(error.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    return ".".join(str(part) for part in loc) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RoundhouseError)
    async def _ours(request: Request, exc: RoundhouseError) -> FastJSONResponse:
        extra = {"errors": exc.data} if isinstance(exc, InvalidInput) and exc.data else {}
        return FastJSONResponse(
            error_body(exc.code, exc.message, _field_of(exc), **extra),
            status_code=exc.http_status,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> FastJSONResponse:
        errors = [
            {"field": _field_from_loc(error), "message": error.get("msg", "invalid")}
            for error in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return FastJSONResponse(
            error_body(
                InvalidInput.code,
                f"{first['field'] or 'body'}: {first['message']}",
                first["field"] or "body",
                errors=errors,
            ),
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> FastJSONResponse:
        return FastJSONResponse(
            error_body(-32600, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> FastJSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return FastJSONResponse(error_body(-32603, "internal error"), status_code=500)
