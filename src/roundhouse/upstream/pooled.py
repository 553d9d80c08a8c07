"""A pooled HTTP client for a JSON backend, with timeouts and size caps both ways.

``httpx.AsyncClient`` underneath, configured from the resilience value objects: at most
``Limits.max_connections`` connections, ``Limits.max_keepalive`` of them kept idle for reuse,
each wait bounded by its own ``Timeouts`` phase. What httpx guarantees, and the tests check:
sequential requests reuse one kept-alive connection; concurrent requests never hold more than
``max_connections`` connections (the rest wait, up to the ``pool`` timeout); once answers are
read, no more than ``max_keepalive`` idle connections stay open.

Size caps are enforced where they cost nothing: a request body over ``max_request_bytes`` is
refused before anything is sent, and the answer is read as a stream, so a body over
``max_response_bytes`` (declared in ``Content-Length`` or not) is cut off after the cap, the
connection closed, and never held in memory whole. Bodies are asked for, and accepted, without
content encoding: a compressed answer could expand past any cap in one step.

The client lives in ``upstream/`` because it does I/O; ``resilience/`` stays pure. httpx errors
become ours in one place, ``_mapped_errors``:

    BackendUnavailable (UpstreamError)      refused, reset, closed early, not HTTP at all
    BackendTimeout (UpstreamTimeout)        a connect/read/write/pool wait ran out (says which)
    RequestTooLarge (InvalidInput)          our body over the cap: nothing was sent
    ResponseTooLarge (UpstreamProtocolError) the answer over the cap

The first two count as breaker failures; the size errors do not (the backend is fine, this one
exchange is not).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from roundhouse.errors import (
    InvalidInput,
    UpstreamClosed,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from roundhouse.resilience.timeouts import Limits, Timeouts

__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "PooledHttpClient",
    "PooledResponse",
    "RequestTooLarge",
    "ResponseTooLarge",
]

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DEFAULT_HEADERS: Final = {"accept": "application/json", "accept-encoding": "identity"}
_JSON_CONTENT: Final = {"content-type": "application/json"}
_DETAIL_CHARS: Final = 200  # a hostile peer's bytes in an error message stay short


class BackendUnavailable(UpstreamError):
    """The backend could not be reached, or broke the exchange off (refused, reset, garbage)."""

    http_status = 503


class BackendTimeout(UpstreamTimeout):
    """A wait on the backend ran out; ``phase`` says which (connect, read, write, pool)."""

    def __init__(self, message: str, *, phase: str, timeout: float) -> None:
        super().__init__(message, data={"phase": phase, "timeout": timeout})
        self.phase = phase
        self.timeout = timeout


class RequestTooLarge(InvalidInput):
    """The request is over ``max_request_bytes``; it was not sent."""

    http_status = 413


class ResponseTooLarge(UpstreamProtocolError):
    """The answer is over ``max_response_bytes``; the rest was not read."""

    counts_as_failure = False


@dataclass(frozen=True, slots=True)
class PooledResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            kind = self.headers.get("content-type", "no content type")
            raise UpstreamProtocolError(
                f"the backend's answer (HTTP {self.status}, {kind[:_DETAIL_CHARS]}, "
                f"{len(self.body)} bytes) is not JSON: {exc}"
            ) from exc


class PooledHttpClient:
    """httpx.AsyncClient with Limits(max_connections, max_keepalive), Timeouts, size caps both
    ways. One per backend, shared by every caller; close it (``async with``) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen: one shared default is safe
        limits: Limits = Limits(),  # noqa: B008
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise InvalidInput(f"not a usable backend URL: {exc}", field="base_url") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidInput(
                "the backend URL must be http:// or https:// with a host", field="base_url"
            )
        self.timeouts = timeouts
        self.limits = limits
        # Where errors say they went: the origin only, never credentials or a query.
        self.origin = f"{url.scheme}://{url.netloc.decode('ascii')}".split("@")[-1]
        self._client = httpx.AsyncClient(
            base_url=url,
            headers={**_DEFAULT_HEADERS, **(headers or {})},
            timeout=httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.write,
                pool=timeouts.pool,
            ),
            limits=httpx.Limits(
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive,
            ),
            follow_redirects=False,
            # A backend client takes no proxy or netrc from the environment.
            trust_env=False,
        )
        self._closed = False

    async def __aenter__(self) -> PooledHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> PooledResponse:
        """One exchange. The answer is returned whatever its status: the caller decides what a
        404 means. Raises the errors in the module docstring."""
        if self._closed:
            raise UpstreamClosed(f"{method} {path}: the client was closed by Roundhouse")
        request = self._build(method, path, json, params)
        with self._mapped_errors(method, path):
            response = await self._client.send(request, stream=True)
            try:
                body = await self._read_body(response, method, path)
            finally:
                await response.aclose()
        return PooledResponse(response.status_code, response.headers, body)

    def _build(
        self, method: str, path: str, json: Any, params: Mapping[str, Any] | None
    ) -> httpx.Request:
        if method not in METHODS:
            raise InvalidInput(f"not an HTTP method this client sends: {method[:20]!r}")
        # An absolute URL here would send the request (and our headers) to another host.
        if not path.startswith("/"):
            raise InvalidInput(f"the path must start with '/': {path[:_DETAIL_CHARS]!r}")
        if params is not None:
            _check_params(params)
        content: bytes | None = None
        if json is not None:
            try:
                content = orjson.dumps(json)
            except TypeError as exc:
                raise InvalidInput(f"{method} {path}: the body is not JSON: {exc}") from exc
        try:
            request = self._client.build_request(
                method,
                path,
                content=content,
                params=params,
                headers=_JSON_CONTENT if content is not None else None,
            )
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise InvalidInput(f"{method} {path[:_DETAIL_CHARS]}: {exc}") from exc
        size = len(request.url.raw_path) + (len(content) if content is not None else 0)
        if size > self.limits.max_request_bytes:
            raise RequestTooLarge(
                f"{method} {path[:_DETAIL_CHARS]}: the request is {size} bytes, over the "
                f"limit of {self.limits.max_request_bytes}; it was not sent",
                data={"size": size, "limit": self.limits.max_request_bytes},
            )
        return request

    async def _read_body(self, response: httpx.Response, method: str, path: str) -> bytes:
        limit = self.limits.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(method, path, f"declares {declared} bytes")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UpstreamProtocolError(
                f"{method} {path}: the backend sent a {encoding[:40]!r}-encoded answer; "
                f"only identity is accepted"
            )
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > limit:
                raise self._too_large(method, path, f"sent more than {limit} bytes")
        return bytes(body)

    def _too_large(self, method: str, path: str, what: str) -> ResponseTooLarge:
        limit = self.limits.max_response_bytes
        return ResponseTooLarge(
            f"{method} {path}: the answer {what}, over the limit of {limit}; it was cut off",
            data={"limit": limit},
        )

    @contextlib.contextmanager
    def _mapped_errors(self, method: str, path: str) -> Iterator[None]:
        """The one place httpx errors become Roundhouse errors."""
        where = f"{method} {path[:_DETAIL_CHARS]} to {self.origin}"
        try:
            yield
        except httpx.TimeoutException as exc:
            phase, seconds = self._phase(exc)
            what = "no free connection" if phase == "pool" else f"the {phase} wait ran out"
            raise BackendTimeout(
                f"{where}: {what} ({phase} timeout {seconds:g} s)", phase=phase, timeout=seconds
            ) from exc
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            raise InvalidInput(f"{where}: the request cannot be sent: {_detail(exc)}") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"{where}: {_detail(exc)}") from exc

    def _phase(self, exc: httpx.TimeoutException) -> tuple[str, float]:
        if isinstance(exc, httpx.ConnectTimeout):
            return "connect", self.timeouts.connect
        if isinstance(exc, httpx.WriteTimeout):
            return "write", self.timeouts.write
        if isinstance(exc, httpx.PoolTimeout):
            return "pool", self.timeouts.pool
        return "read", self.timeouts.read


_PRIMITIVES: Final = (str, int, float, bool, type(None))


def _check_params(params: Mapping[str, Any]) -> None:
    """Query values must be primitives (or lists of them): httpx would send ``str()`` of
    anything else, an object's repr included."""
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else (value,)
        if not isinstance(name, str) or not all(isinstance(v, _PRIMITIVES) for v in values):
            raise InvalidInput(
                f"query parameter {str(name)[:40]!r} must be a string, number, boolean or "
                f"null (or a list of them), not {type(value).__name__}",
                field="params",
            )


def _detail(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:_DETAIL_CHARS]}"
