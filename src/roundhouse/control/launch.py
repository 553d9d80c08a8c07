"""One start of an instance: the process (if any), its MCP connection and what it holds.

A :class:`Launch` is created for every start attempt and closed when that run ends, however it
ends; the worker in ``instance.py`` decides what the end means for the state machine. Keeping a
start's resources in one object makes the release one idempotent call, whatever step the start
got to before it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roundhouse.control.runtimes.ports import PortAllocator
from roundhouse.control.runtimes.process import ManagedProcess, ProcessRuntime, StopTimeouts
from roundhouse.control.stderr import StderrSink
from roundhouse.errors import RoundhouseError, UpstreamError
from roundhouse.events import EventBus
from roundhouse.protocol.eras import Handshake
from roundhouse.protocol.jsonrpc import Message
from roundhouse.spec import HttpTransport, LocalHttpTransport, ServerSpec, StdioTransport
from roundhouse.store.records import InstanceRecord
from roundhouse.upstream.base import Connection
from roundhouse.upstream.handshake import handshake, ping
from roundhouse.upstream.stdio import StdioConnection

if TYPE_CHECKING:
    import httpx

    from roundhouse.upstream.sse import SseConnection

__all__ = ["Ended", "InstanceContext", "Launch", "describe"]

#: Environment variables of the gateway that never reach a server: they may hold the
#: registry's credentials.
PRIVATE_ENV_PREFIX = "ROUNDHOUSE_"
#: How often a local-http server's health path is polled while it starts.
HEALTH_POLL_SECONDS = 0.05
#: How long closing the MCP connection may take before the process is stopped anyway.
CONNECTION_CLOSE_TIMEOUT = 2.0
#: How long the stderr reader gets to drain what the process wrote before it ended.
STDERR_DRAIN_TIMEOUT = 1.0
#: The wires an instance may speak (``InstanceRecord.transport``).
STREAMABLE_HTTP = "streamable-http"
SSE = "sse"


@dataclass(frozen=True, slots=True)
class InstanceContext:
    """What every instance of one supervisor shares."""

    runtime: ProcessRuntime
    ports: PortAllocator
    bus: EventBus
    #: The shared HTTP client, made on first use: a gateway with only stdio servers never
    #: loads httpx (~6 MiB).
    http: Callable[[], httpx.AsyncClient]
    save: Callable[[InstanceRecord], Awaitable[None]]
    logs_dir: Path
    ring_lines: int
    log_bytes: int
    log_backups: int
    boot_id: str
    #: The largest message an upstream may send: a stdio line, an HTTP+SSE event.
    max_line_bytes: int = 16 << 20
    #: Where messages an upstream sends on its own go (notifications, server-to-client
    #: requests): ``(slug, instance id, message)``. The data plane installs it.
    on_message: Callable[[str, str, Message], None] | None = None


#: What the gateway declares to every upstream: it can relay these to a client that has them
#: (servers register some tools only when they see the capability).
GATEWAY_CLIENT_CAPABILITIES: dict[str, Any] = {
    "sampling": {},
    "elicitation": {},
    "roots": {"listChanged": True},
}


class Ended(Exception):
    """The instance ended without being asked to: crash, failed start, failed health."""

    def __init__(self, reason: str, code: int | None = None, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        #: Not the server's fault (no free port): retried, never counted towards a crash loop.
        self.transient = transient


class Launch:
    """The resources of one run of an instance, from spawn (or connect) to close."""

    def __init__(
        self, spec: ServerSpec, record: InstanceRecord, ctx: InstanceContext, stderr: StderrSink
    ) -> None:
        self.spec = spec
        self.record = record
        self._ctx = ctx
        self._stderr = stderr
        self.process: ManagedProcess | None = None
        self.connection: Connection | None = None
        self.handshake: Handshake | None = None
        self.port: int | None = None
        self._tasks: list[asyncio.Future[None]] = []
        self._closed = False

    async def start(self) -> None:
        """Spawn or connect, wait for readiness, shake hands. Raises :class:`Ended` when the
        process ends during the start, SpawnError when it cannot be spawned at all."""
        transport = self.spec.transport
        record = self.record
        if isinstance(transport, HttpTransport):
            record.endpoint = transport.url
            await self._start_remote(transport)
            return
        if isinstance(transport, LocalHttpTransport):
            self.port = record.port = self._ctx.ports.allocate()
        argv, env = command_line(transport, self.port)
        self.process = process = await self._ctx.runtime.spawn(argv, env=env, cwd=transport.cwd)
        record.pid = record.pgid = process.pid
        record.pid_start_ticks = process.start_ticks
        record.owner = self._ctx.boot_id
        await self._ctx.save(record)
        self._tasks.append(asyncio.ensure_future(self._stderr.pump(process.stderr)))
        if isinstance(transport, StdioTransport):
            stdio = StdioConnection(
                process.stdout,
                process.stdin,
                max_line_bytes=self._ctx.max_line_bytes,
                on_message=self._relay(),
                name=record.id,
            )
            self._tasks.append(asyncio.ensure_future(stdio.run()))
            self.connection = stdio
            record.endpoint = f"stdio://{process.pid}"
            record.transport = "stdio"
        else:
            from roundhouse.upstream.http import HttpConnection

            # Its stdout is a log like its stderr; unread, a chatty server would block on a
            # full pipe.
            self._tasks.append(asyncio.ensure_future(self._stderr.pump(process.stdout)))
            base = f"http://127.0.0.1:{self.port}"
            if transport.health_path is None:
                await self._wait_for_port(process)
            else:
                await self._wait_for_health(base + transport.health_path, process)
            self.connection = HttpConnection(
                base + transport.mcp_path, client=self._ctx.http(), on_message=self._relay()
            )
            record.endpoint = base + transport.mcp_path
            record.transport = STREAMABLE_HTTP
        self.handshake = await self._first_handshake(self.connection)

    async def _start_remote(self, transport: HttpTransport) -> None:
        """Reach a remote server: HTTP+SSE when the spec says ``sse``; else Streamable HTTP, and
        HTTP+SSE at the same URL when the server refuses the first POST (the specification's
        backwards compatibility rule). All of it within the worker's start timeout."""
        from roundhouse.upstream.http import HttpConnection
        from roundhouse.upstream.sse import NotAnEventStream, post_refused

        headers = {**transport.headers, **self._auth_headers()}
        if transport.type == "sse":
            self.handshake = await self._first_handshake(await self._open_sse(transport, headers))
            return
        self.record.transport = STREAMABLE_HTTP
        self.connection = streamable = HttpConnection(
            transport.url, headers=headers, client=self._ctx.http(), on_message=self._relay()
        )
        try:
            self.handshake = await self._first_handshake(streamable)
            return
        except UpstreamError as refused:
            if not post_refused(streamable.refused_status):
                raise
            self.connection = None
            await streamable.aclose()
            try:
                sse = await self._open_sse(transport, headers)
            except NotAnEventStream:
                raise refused from None  # no event stream either: the POST's refusal says most
        self.handshake = await self._first_handshake(sse)

    async def _open_sse(self, transport: HttpTransport, headers: dict[str, str]) -> SseConnection:
        from roundhouse.upstream.sse import SseConnection

        self.record.transport = SSE
        self.connection = sse = SseConnection(
            transport.url,
            client=self._ctx.http(),
            headers=headers,
            on_message=self._relay(),
            name=self.record.id,
            max_event_bytes=self._ctx.max_line_bytes,
        )
        await sse.connect(timeout=self.spec.timeouts.start)
        return sse

    def connection_lost(self) -> Awaitable[str] | None:
        """What ends when the connection ends on its own (an HTTP+SSE stream that broke), with
        why; None for connections whose end shows otherwise (a process exit, failed checks)."""
        connection = self.connection
        if connection is None or self.record.transport != SSE:
            return None
        wait_closed: Callable[[], Awaitable[str]] = getattr(connection, "wait_closed")  # noqa: B009
        return wait_closed()

    def _relay(self) -> Callable[[Message], None] | None:
        on_message = self._ctx.on_message
        if on_message is None:
            return None
        slug, instance = self.record.server, self.record.id
        return lambda message: on_message(slug, instance, message)

    async def _first_handshake(self, connection: Connection) -> Handshake:
        timeout = self.spec.timeouts.start
        process = self.process
        prefer = self.spec.era
        if prefer == "auto" and self.record.transport == SSE:
            # HTTP+SSE belongs to the handshake era; SDK servers answer server/discover on it
            # too, but a 2026-07-28 conversation could not carry their sampling requests.
            prefer = "legacy"
        if prefer == "both":
            prefer = "legacy" if self.record.ordinal % 2 == 0 else "modern"
        shaking = handshake(
            connection, timeout=timeout, capabilities=GATEWAY_CLIENT_CAPABILITIES, prefer=prefer
        )
        if process is None:
            return await shaking
        # Race the handshake against the process's exit: a server that dies at once must not
        # make us wait for the start timeout.
        shake = asyncio.ensure_future(shaking)
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait({shake, exited}, return_when=asyncio.FIRST_COMPLETED)
            if shake in done:
                return shake.result()
            raise Ended(f"exited with code {exited.result()} during start", exited.result())
        finally:
            for task in (shake, exited):
                if not task.done():
                    task.cancel()

    async def _wait_for_health(self, url: str, process: ManagedProcess) -> None:
        import httpx

        while True:
            if process.returncode is not None:
                code = process.returncode
                raise Ended(f"exited with code {code} during start", code)
            try:
                response = await self._ctx.http().get(url, timeout=self.spec.health.timeout)
                if response.is_success:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def _wait_for_port(self, process: ManagedProcess) -> None:
        while True:
            if process.returncode is not None:
                code = process.returncode
                raise Ended(f"exited with code {code} during start", code)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(HEALTH_POLL_SECONDS)
                continue
            writer.close()
            return

    def _auth_headers(self) -> dict[str, str]:
        auth = self.spec.auth
        if auth.type == "bearer" and auth.token is not None:
            return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
        if auth.type == "api_key" and auth.key is not None:
            return {auth.header: auth.key.get_secret_value()}
        return {}

    async def check(self) -> tuple[str | None, float | None]:
        """One health check: (None, seconds the MCP probe took) or (what failed, None)."""
        connection, shake = self.connection, self.handshake
        if connection is None or shake is None:
            return "no connection", None
        transport = self.spec.transport
        timeout = self.spec.health.timeout
        try:
            path = transport.health_path if isinstance(transport, LocalHttpTransport) else None
            if path is not None and self.port is not None:
                url = f"http://127.0.0.1:{self.port}{path}"
                response = await self._ctx.http().get(url, timeout=timeout)
                if not response.is_success:
                    return f"health path answered {response.status_code}", None
            return None, await ping(connection, shake, timeout=timeout)
        except Exception as exc:
            if not isinstance(exc, (UpstreamError, TimeoutError, *_http_errors())):
                raise
            return f"health check failed: {describe(exc)}", None

    async def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        connection, shake = self.connection, self.handshake
        if connection is None or shake is None:
            raise UpstreamError(f"instance {self.record.id} is not ready")
        return await connection.request(
            method, shake.stamp(params), timeout=self.spec.timeouts.call
        )

    async def close(self) -> int | None:
        """Close the connection, stop the process, free the port; the exit code, if a process
        ran. Idempotent and bounded by the spec's stop timeout."""
        if self._closed:
            return self.process.returncode if self.process is not None else None
        self._closed = True
        connection, self.connection = self.connection, None
        self.handshake = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.aclose(), CONNECTION_CLOSE_TIMEOUT)
        code: int | None = None
        try:
            if self.process is not None:
                # An HTTP server does not read stdin: closing it is no cue, skip the grace.
                grace = 0.0 if isinstance(self.spec.transport, LocalHttpTransport) else None
                timeouts = StopTimeouts(term=self.spec.timeouts.stop)
                if grace is not None:
                    timeouts = StopTimeouts(grace=grace, term=self.spec.timeouts.stop)
                code = await self.process.stop(timeouts)
            for task in self._tasks:
                if not task.done():
                    with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                        await asyncio.wait_for(task, STDERR_DRAIN_TIMEOUT)
        finally:
            # Even if the caller is cancelled mid-stop, the port must go back.
            if self.port is not None:
                self._ctx.ports.release(self.port)
                self.port = self.record.port = None
        return code


def _http_errors() -> tuple[type[Exception], ...]:
    """httpx's errors once httpx is loaded; before that none of them can be raised."""
    httpx = sys.modules.get("httpx")
    return (httpx.HTTPError,) if httpx is not None else ()


def describe(exc: BaseException) -> str:
    """An error as a short reason for a person; never a traceback, never a secret."""
    if isinstance(exc, RoundhouseError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


def command_line(
    transport: StdioTransport | LocalHttpTransport, port: int | None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment for a spawn: the gateway's environment minus its own settings,
    the spec's env on top, ``{port}`` filled in for local-http servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIX)}
    argv = [transport.command, *transport.args]
    extra = dict(transport.env)
    if port is not None:
        argv = [part.replace("{port}", str(port)) for part in argv]
        extra = {k: v.replace("{port}", str(port)) for k, v in extra.items()}
        env["PORT"] = str(port)
    env.update(extra)
    return argv, env
