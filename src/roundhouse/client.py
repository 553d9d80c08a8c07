"""A synchronous client for a running gateway's REST API: the remote manager.

:class:`RemoteClient` offers the same verbs as :class:`roundhouse.manager.AsyncManager`, but
steers a gateway in another process over HTTP; the CLI is built on it. Answers are the API's
plain JSON views. Errors arrive as the :mod:`roundhouse.errors` tree, mapped in one place from
the API's error body (``{"error": {"code", "message", "field"}}``) and from httpx's transport
errors, plus one error of the client's own:

    RoundhouseError
    └── GatewayUnreachable      nothing answers at the gateway's URL

"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from roundhouse.errors import Conflict, InvalidInput, NotFound, RoundhouseError

__all__ = [
    "CONNECT_TIMEOUT",
    "REQUEST_TIMEOUT",
    "GatewayUnreachable",
    "RemoteClient",
    "default_url",
]

#: Seconds to open a connection to the gateway; it is local, so this is generous.
CONNECT_TIMEOUT = 5.0
#: Seconds for one answer. A stop or restart waits out the servers' stop timeouts (10 s each by
#: default), so this is well above them.
REQUEST_TIMEOUT = 120.0


class GatewayUnreachable(RoundhouseError):
    """Nothing answers at the gateway's URL: no gateway runs there, or it is not reachable."""

    http_status = 503

    def __init__(self, url: str) -> None:
        super().__init__(f"no Roundhouse gateway at {url} — start one with `roundhouse up`")
        self.url = url


def default_url() -> str:
    """The local gateway on the default port."""
    # Imported here: settings pull in pydantic-settings, which the CLI's --help must not pay for.
    from roundhouse.settings import DEFAULT_PORT

    return f"http://127.0.0.1:{DEFAULT_PORT}"


class RemoteClient:
    """Steers a running gateway: ``with RemoteClient("http://127.0.0.1:8090") as rh: ...``."""

    def __init__(self, url: str | None = None, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.url = (url or default_url()).rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            headers={"Accept": "application/json"},
            # A gateway on loopback must not be reached through a proxy from the environment.
            trust_env=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- servers ---------------------------------------------------------------------------

    def list_servers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/servers")
        return result

    def get_server(self, slug: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", _server(slug))
        return result

    def create_server(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/servers", json=spec)
        return result

    def put_server(self, slug: str, spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Replace or create; returns the view and whether the server was created."""
        response = self._send("PUT", _server(slug), json=spec)
        return self._json(response), response.status_code == httpx.codes.CREATED

    def patch_server(self, slug: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change part of a spec (a JSON merge patch: ``None`` removes a key)."""
        result: dict[str, Any] = self._request(
            "PATCH", _server(slug), json=patch, content_type="application/merge-patch+json"
        )
        return result

    def delete_server(self, slug: str) -> None:
        self._send("DELETE", _server(slug))

    def start(self, slug: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"{_server(slug)}/start")
        return result

    def stop(self, slug: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"{_server(slug)}/stop")
        return result

    def restart(self, slug: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"{_server(slug)}/restart")
        return result

    def scale(self, slug: str, instances: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"{_server(slug)}/scale", json={"instances": instances}
        )
        return result

    def instances(self, slug: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"{_server(slug)}/instances")
        return result

    def import_servers(self, specs: list[dict[str, Any]]) -> list[str]:
        """Create or replace several servers at once; returns their slugs."""
        body = self._request("POST", "/api/import", json={"servers": specs})
        imported: list[str] = body["imported"]
        return imported

    # -- logs ------------------------------------------------------------------------------

    def logs(self, slug: str, lines: int = 100) -> list[dict[str, Any]]:
        """The last ``lines`` stderr lines of a server's instances.

        Each is ``{"ts": float, "instance": str, "line": str}``, oldest first.
        """
        body = self._request("GET", f"{_server(slug)}/logs", params={"lines": lines})
        result: list[dict[str, Any]] = body["lines"]
        return result

    def follow_logs(self, slug: str, lines: int = 100) -> Iterator[dict[str, Any]]:
        """The last ``lines`` lines, then each new one as it comes, until the stream ends.

        Closing the iterator (or leaving a ``for`` loop) disconnects from the gateway.
        """
        path = f"{_server(slug)}/logs"
        params: dict[str, str | int] = {"lines": lines, "follow": "true"}
        # No read timeout: a quiet server may write nothing for hours.
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT)
        with (
            self._mapped_transport_errors(),
            self._http.stream("GET", path, params=params, timeout=timeout) as response,
        ):
            if response.is_error:
                response.read()
                raise _error_from(response, self.url)
            for raw in response.iter_lines():
                if raw.strip():
                    yield _log_line(raw)

    # -- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Servers by health: ``{total_servers, healthy_servers, ..., avg_response_time_ms}``."""
        result: dict[str, Any] = self._request("GET", "/api/health")
        return result

    def gateway(self) -> dict[str, Any]:
        """The gateway itself: ``{status, version, uptime_seconds, endpoints}``."""
        result: dict[str, Any] = self._request("GET", "/health")
        return result

    # -- plumbing --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> Any:
        return self._json(
            self._send(method, path, json=json, params=params, content_type=content_type)
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else None
        with self._mapped_transport_errors():
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        if response.is_error:
            raise _error_from(response, self.url)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise RoundhouseError(
                f"the answer from {self.url} is not JSON — is it a Roundhouse gateway?"
            ) from None

    @contextmanager
    def _mapped_transport_errors(self) -> Iterator[None]:
        """httpx's transport errors, as the errors a caller of this client can act on."""
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise GatewayUnreachable(self.url) from None
        except httpx.TimeoutException:
            raise RoundhouseError(f"the gateway at {self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise RoundhouseError(
                f"the connection to the gateway at {self.url} failed: {exc or type(exc).__name__}"
            ) from None


def _server(slug: str) -> str:
    return f"/api/servers/{quote(slug, safe='')}"


def _error_from(response: httpx.Response, url: str) -> RoundhouseError:
    """The API's error body as one of ours, by HTTP status."""
    status = response.status_code
    try:
        error = response.json()["error"]
        message = str(error["message"])
        field = error.get("field")
    except (ValueError, KeyError, TypeError):
        error = None
        message = f"HTTP {status} from {url} — is it a Roundhouse gateway?"
        field = None
    if status == httpx.codes.NOT_FOUND:
        return NotFound(message, data=error)
    if status == httpx.codes.CONFLICT:
        return Conflict(message, data=error)
    if status in (400, 413, 422):
        return InvalidInput(message, field=field if isinstance(field, str) else None, data=error)
    return RoundhouseError(message, data=error)


def _log_line(raw: str) -> dict[str, Any]:
    # One malformed line is shown as it came; it does not end the stream.
    try:
        line = json.loads(raw)
    except ValueError:
        return {"ts": None, "instance": "", "line": raw}
    if not isinstance(line, dict):
        return {"ts": None, "instance": "", "line": raw}
    return line
