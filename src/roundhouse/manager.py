"""The composition root: builds every part of the house and wires them together.

:class:`AsyncManager` is what ``roundhouse up`` runs and what the REST API steers; it is also
the Python API. Every method that changes desired state writes the registry first and then
asks the reconciler to converge, so what the registry says is what will run after a restart.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import ValidationError

from roundhouse.control.launch import InstanceContext
from roundhouse.control.reconciler import Reconciler
from roundhouse.control.runtimes.ports import PortAllocator
from roundhouse.control.runtimes.process import ProcessRuntime
from roundhouse.control.states import RUNNING_STATES, Health
from roundhouse.control.stderr import LogLine
from roundhouse.control.supervisor import Supervisor
from roundhouse.defaults import apply_defaults
from roundhouse.errors import Conflict, InvalidInput, NotFound, RoundhouseError
from roundhouse.events import EventBus, Subscription
from roundhouse.gateway.service import Gateway
from roundhouse.protocol.jsonrpc import Message
from roundhouse.settings import Settings
from roundhouse.spec import ServerSpec, check_supported, keep_masked_secrets, spec_to_storage
from roundhouse.store.records import InstanceRecord, ServerRecord
from roundhouse.store.store import Store
from roundhouse.views import server_health, server_view

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncManager", "parse_spec"]

log = logging.getLogger(__name__)

MAX_LOG_LINES = 10_000


def parse_spec(data: Any, *, slug: str | None = None, old: ServerSpec | None = None) -> ServerSpec:
    """Validate a spec from the outside world; errors name the field."""
    if not isinstance(data, dict):
        raise InvalidInput("a server spec must be a JSON object", field="body")
    data = dict(data)
    if slug is not None:
        if "slug" in data and data["slug"] != slug:
            raise InvalidInput(
                f"slug in the body ({data['slug']!r}) differs from the URL ({slug!r})",
                field="slug",
            )
        data["slug"] = slug
    data = keep_masked_secrets(data, old)
    try:
        spec = ServerSpec.model_validate(data)
    except ValidationError as exc:
        errors = _errors(exc)
        field = errors[0]["field"] or "body"
        raise InvalidInput(f"{field}: {errors[0]['message']}", field=field, data=errors) from None
    check_supported(spec)
    return spec


_TRANSPORT_TAGS = frozenset({"stdio", "http", "sse", "local-http"})


def _field(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as the user wrote it: ``transport.stdio.args`` names the union
    member pydantic tried, which the user never typed; it reads ``transport.args``."""
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] == "transport" and parts[1] in _TRANSPORT_TAGS:
        del parts[1]
    return ".".join(parts)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Never echo the input back: it may hold a secret.
    return [{"field": _field(error["loc"]), "message": error["msg"]} for error in exc.errors()]


class AsyncManager:
    """Roundhouse in one object: ``async with AsyncManager(settings) as manager: ...``."""

    def __init__(self, settings: Settings | None = None, *, servers: Iterable[ServerSpec] = ()):
        self.settings = settings or Settings()
        self.bus = EventBus()
        self.boot_id = secrets.token_hex(8)
        self._initial_servers = list(servers)
        self._stack = AsyncExitStack()
        self.started_at = 0.0
        self._http: httpx.AsyncClient | None = None
        #: Set when the gateway begins to shut down: long-lived streams end on it.
        self.closing = asyncio.Event()

    async def __aenter__(self) -> Self:
        settings = self.settings
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            settings.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._stack.callback(_lock_data_dir(settings.data_dir))
            self.store = await Store.open(settings.registry_url)
            self._stack.push_async_callback(self.store.close)
            self.runtime = ProcessRuntime()
            self.runtime.start()
            self._stack.push_async_callback(self.runtime.close)
            # Registered before the supervisor, so the HTTP client (made on first use) is closed
            # after every instance has stopped: a connection may talk to its server until then.
            self._stack.push_async_callback(self._close_http)
            self.ports = PortAllocator(*settings.port_range)
            ctx = InstanceContext(
                runtime=self.runtime,
                ports=self.ports,
                bus=self.bus,
                http=self.http_client,
                save=self._save_instance,
                logs_dir=settings.logs_dir,
                ring_lines=settings.stderr_ring_lines,
                log_bytes=settings.stderr_log_bytes,
                log_backups=settings.stderr_log_backups,
                boot_id=self.boot_id,
                max_line_bytes=settings.max_mcp_body_bytes,
                on_message=self._on_upstream_message,
            )
            self.supervisor = await self._stack.enter_async_context(Supervisor.running(ctx))
            self.gateway = Gateway(self.supervisor, self.bus, settings)
            await self.gateway.start()
            self._stack.push_async_callback(self.gateway.close)
            self.reconciler = Reconciler(self.store, self.supervisor, self.boot_id)
            left = await self.reconciler.recover()
            if left:
                log.warning("stopped %d process group(s) left by a previous run", left)
            await apply_defaults(self.store, settings)
            for spec in self._initial_servers:
                await self.store.upsert_server(spec)
            await self.reconciler.reconcile_all()
        except BaseException:
            await self._stack.aclose()
            raise
        self.started_at = time.time()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closing.set()
        await self._stack.aclose()

    def http_client(self) -> httpx.AsyncClient:
        """The HTTP client every HTTP upstream shares, made on first use: creating it loads
        httpx and a TLS context (~6 MiB, ~0.1 s), which a gateway with only stdio servers
        never needs."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=5.0),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                trust_env=False,
            )
        return self._http

    async def _close_http(self) -> None:
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()

    def _on_upstream_message(self, slug: str, instance: str, message: Message) -> None:
        gateway = getattr(self, "gateway", None)
        if gateway is not None:
            gateway.relay.upstream_message(slug, instance, message)

    async def _save_instance(self, record: InstanceRecord) -> None:
        try:
            await self.store.save_instance(record)
        except RoundhouseError as exc:
            # The server may have been deleted under a worker that is on its way out.
            log.debug("instance %s not saved: %s", record.id, exc.message)

    # --- reading ------------------------------------------------------------------------------

    def _live_instances(self, slug: str, rows: list[InstanceRecord]) -> list[InstanceRecord]:
        live = {worker.record.id: worker.record for worker in self.supervisor.workers(slug)}
        merged = [live.get(row.id, row) for row in rows]
        merged += [record for id_, record in live.items() if id_ not in {r.id for r in rows}]
        return sorted(merged, key=lambda record: record.ordinal)

    async def _view(self, server: ServerRecord) -> dict[str, Any]:
        rows = await self.store.list_instances(server.slug)
        return server_view(server, self._live_instances(server.slug, rows))

    async def list_servers(self) -> list[dict[str, Any]]:
        return [await self._view(server) for server in await self.store.list_servers()]

    async def get_server(self, slug: str) -> dict[str, Any]:
        return await self._view(await self.store.get_server(slug))

    async def instances(self, slug: str) -> list[dict[str, Any]]:
        return list((await self.get_server(slug))["instances"])

    async def logs(self, slug: str, lines: int = 100) -> list[LogLine]:
        await self.store.get_server(slug)
        if not 0 <= lines <= MAX_LOG_LINES:
            raise InvalidInput(f"lines must be between 0 and {MAX_LOG_LINES}", field="lines")
        return self.supervisor.logs(slug, lines)

    @asynccontextmanager
    async def follow_logs(self, slug: str) -> AsyncIterator[Subscription]:
        await self.store.get_server(slug)
        async with self.bus.subscribe(
            lambda event: event.kind == "instance.log" and event.data.get("server") == slug
        ) as subscription:
            yield subscription

    async def health(self) -> dict[str, Any]:
        servers = await self.store.list_servers()
        counts = {Health.HEALTHY: 0, Health.DEGRADED: 0, Health.UNHEALTHY: 0}
        times: list[float] = []
        for server in servers:
            instances = self._live_instances(
                server.slug, await self.store.list_instances(server.slug)
            )
            health = server_health(instances)
            if health in counts:
                counts[health] += 1
            times += [
                record.last_response_time
                for record in instances
                if record.state in RUNNING_STATES and record.last_response_time is not None
            ]
        return {
            "total_servers": len(servers),
            "healthy_servers": counts[Health.HEALTHY],
            "degraded_servers": counts[Health.DEGRADED],
            "unhealthy_servers": counts[Health.UNHEALTHY],
            "avg_response_time_ms": round(sum(times) / len(times) * 1000, 3) if times else 0.0,
        }

    # --- changing desired state ---------------------------------------------------------------

    async def create_server(self, data: Any) -> dict[str, Any]:
        spec = parse_spec(data)
        server = await self.store.create_server(spec, spec.instances.min)
        await self.reconciler.reconcile(spec.slug)
        return await self._view(server)

    async def put_server(self, slug: str, data: Any) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns the view and whether it was created."""
        try:
            old: ServerSpec | None = (await self.store.get_server(slug)).spec
        except NotFound:
            old = None
        spec = parse_spec(data, slug=slug, old=old)
        if old is None:
            server = await self.store.create_server(spec, spec.instances.min)
        else:
            server = await self.store.replace_server(spec)
        await self.reconciler.reconcile(slug)
        return await self._view(server), old is None

    async def patch_server(self, slug: str, patch: Any) -> dict[str, Any]:
        if not isinstance(patch, dict):
            raise InvalidInput("a patch must be a JSON object", field="body")
        old = (await self.store.get_server(slug)).spec
        merged = _merge(spec_to_storage(old), patch)
        spec = parse_spec(merged, slug=slug, old=old)
        server = await self.store.replace_server(spec)
        await self.reconciler.reconcile(slug)
        return await self._view(server)

    async def delete_server(self, slug: str) -> None:
        await self.store.get_server(slug)
        await self.reconciler.remove(slug)

    async def start(self, slug: str) -> dict[str, Any]:
        server = await self.store.set_enabled(slug, True)
        await self.reconciler.reconcile(slug, restart=server.desired_instances == 0)
        return await self._view(server)

    async def stop(self, slug: str) -> dict[str, Any]:
        server = await self.store.set_enabled(slug, False)
        await self.reconciler.reconcile(slug)
        return await self._view(server)

    async def restart(self, slug: str) -> dict[str, Any]:
        server = await self.store.get_server(slug)
        if not server.spec.enabled:
            server = await self.store.set_enabled(slug, True)
        await self.reconciler.reconcile(slug, restart=True)
        return await self._view(server)

    async def scale(self, slug: str, instances: Any) -> dict[str, Any]:
        if not isinstance(instances, int) or isinstance(instances, bool):
            raise InvalidInput("instances must be an integer", field="instances")
        spec = (await self.store.get_server(slug)).spec
        low, high = spec.instances.min, spec.instances.max
        if not low <= instances <= high:
            raise InvalidInput(
                f"instances must be between {low} and {high} for {slug!r}"
                " (change the spec's instances.min/max to go further)",
                field="instances",
            )
        server = await self.store.set_desired_instances(slug, instances)
        await self.reconciler.reconcile(slug)
        return await self._view(server)

    async def import_specs(self, specs: Iterable[ServerSpec]) -> list[str]:
        slugs = []
        for spec in specs:
            check_supported(spec)
            await self.store.upsert_server(spec)
            await self.reconciler.reconcile(spec.slug)
            slugs.append(spec.slug)
        return slugs

    async def call(
        self, slug: str, method: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One MCP request to one of the server's running instances, over its connection."""
        await self.store.get_server(slug)
        return await self.supervisor.call(slug, method, params)


LOCK_FILE = "gateway.lock"


def _lock_data_dir(data_dir: Path) -> Callable[[], None]:
    """Hold the data dir for this gateway alone; returns the release.

    Two gateways on one data dir would each take the other's servers for leftovers of a crashed
    run and stop them. The lock is the kernel's (``flock``): a gateway killed with ``kill -9``
    lets go of it at once.
    """
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise Conflict(
            f"another Roundhouse gateway (pid {holder}) is using the data dir {data_dir};"
            " stop it or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())

    def release() -> None:
        os.close(fd)

    return release


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): objects merge, ``null`` deletes, anything else replaces."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
