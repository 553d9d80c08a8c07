"""The Python API: :class:`Manager`, a blocking face of :class:`AsyncManager` for scripts.

It runs the gateway's event loop in a thread of its own, so a plain script (or a REPL) can say
``manager = Manager(); manager.start(); manager.deploy_server("time", {...})``. The method names
of the original manager API are kept (``deploy_server``, ``undeploy_server``, ``execute``,
``get_server_state``, ``get_health_status``, ``list_servers``, ``scale_server``), next to the
names the REST API uses. ``AsyncManager`` is the same thing for asyncio code.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from roundhouse.config import load_config, settings_from_file
from roundhouse.errors import InvalidInput, RoundhouseError
from roundhouse.manager import AsyncManager
from roundhouse.settings import Settings

__all__ = ["HealthStatus", "Manager", "ServerInfo"]

T = TypeVar("T")
#: Seconds a blocking call waits for the gateway's loop before it gives up.
CALL_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class HealthStatus:
    total_servers: int
    healthy_servers: int
    degraded_servers: int
    unhealthy_servers: int
    avg_response_time_ms: float


@dataclass(frozen=True, slots=True)
class ServerInfo:
    id: str
    name: str
    server_type: str
    state: str
    priority: int


def spec_from_config(server_id: str, config: str | dict[str, Any]) -> dict[str, Any]:
    """A spec from either Roundhouse's own shape or the original manager's
    (``{"name", "server_type", "url", "auth", "priority", "tags"}``)."""
    if isinstance(config, str):
        try:
            config = orjson.loads(config)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"config is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    spec = dict(config)
    spec.setdefault("slug", server_id)
    server_type = spec.pop("server_type", None)
    if "transport" not in spec:
        if "url" in spec:
            spec["transport"] = {"type": "http", "url": spec.pop("url")}
        elif "command" in spec:
            keys = ("command", "args", "env", "cwd")
            spec["transport"] = {k: spec.pop(k) for k in keys if k in spec}
    if isinstance(server_type, str) and server_type:
        spec["tags"] = [*spec.get("tags", []), f"type:{server_type}"]
    return spec


class Manager:
    """Roundhouse for blocking code. ``start()`` before use, ``stop()`` after (or ``with``)."""

    def __init__(self, config_path: str | Path | None = None, **settings: Any) -> None:
        self._config_path = Path(config_path) if config_path is not None else None
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._manager: AsyncManager | None = None
        self._stopped: asyncio.Event | None = None

    def __enter__(self) -> Manager:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        servers = []
        if self._config_path is not None:
            config = load_config(self._config_path)
            settings = settings_from_file(config, **self._settings)
            servers = list(config.servers)
        else:
            settings = Settings(**self._settings)
        ready: Future[None] = Future()
        loop = asyncio.new_event_loop()

        async def main() -> None:
            self._stopped = asyncio.Event()
            try:
                async with AsyncManager(settings, servers=servers) as manager:
                    self._manager = manager
                    ready.set_result(None)
                    await self._stopped.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise
            finally:
                self._manager = None

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
            except BaseException:  # noqa: S110 - reported through ``ready``
                pass
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="roundhouse", daemon=True)
        self._thread.start()
        try:
            ready.result(CALL_TIMEOUT)
        except BaseException:
            self._thread.join(CALL_TIMEOUT)
            self._thread = self._loop = None
            raise

    def stop(self) -> None:
        """Stop every instance and the gateway's loop. Idempotent."""
        loop, thread, stopped = self._loop, self._thread, self._stopped
        if loop is None or thread is None or stopped is None:
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(CALL_TIMEOUT)
        self._loop = self._thread = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or self._manager is None:
            coroutine.close()
            raise RoundhouseError("the manager is not started; call start() first")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)

    @property
    def manager(self) -> AsyncManager:
        if self._manager is None:
            raise RoundhouseError("the manager is not started; call start() first")
        return self._manager

    # --- the original manager API -------------------------------------------------------------

    def deploy_server(self, server_id: str, config_json: str | dict[str, Any]) -> dict[str, Any]:
        return self._run(self.manager.create_server(spec_from_config(server_id, config_json)))

    def undeploy_server(self, server_id: str) -> None:
        self._run(self.manager.delete_server(server_id))

    def execute(self, server_id: str, request_json: str | dict[str, Any]) -> str:
        """One MCP request (``{"method": ..., "params": ...}``) to the server; the result as
        JSON text."""
        request = orjson.loads(request_json) if isinstance(request_json, str) else request_json
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise InvalidInput('a request is {"method": str, "params": {...}}')
        params = request.get("params")
        if params is not None and not isinstance(params, dict):
            raise InvalidInput("params must be an object")
        result = self._run(self.manager.call(server_id, request["method"], params))
        return orjson.dumps(result).decode()

    def get_server_state(self, server_id: str) -> str:
        return str(self._run(self.manager.get_server(server_id))["state"])

    def get_health_status(self) -> HealthStatus:
        return HealthStatus(**self._run(self.manager.health()))

    def list_servers(self) -> list[ServerInfo]:
        infos = []
        for view in self._run(self.manager.list_servers()):
            spec = view["spec"]
            types = [t.removeprefix("type:") for t in spec["tags"] if t.startswith("type:")]
            infos.append(
                ServerInfo(
                    id=view["slug"],
                    name=view["name"],
                    server_type=types[0] if types else view["transport"],
                    state=view["state"],
                    priority=spec["priority"],
                )
            )
        return infos

    def scale_server(self, server_id: str, instances: int) -> dict[str, Any]:
        return self._run(self.manager.scale(server_id, instances))

    # --- the REST API's names -----------------------------------------------------------------

    def get_server(self, slug: str) -> dict[str, Any]:
        return self._run(self.manager.get_server(slug))

    def start_server(self, slug: str) -> dict[str, Any]:
        return self._run(self.manager.start(slug))

    def stop_server(self, slug: str) -> dict[str, Any]:
        return self._run(self.manager.stop(slug))

    def restart_server(self, slug: str) -> dict[str, Any]:
        return self._run(self.manager.restart(slug))

    def logs(self, slug: str, lines: int = 100) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self._run(self.manager.logs(slug, lines))]
