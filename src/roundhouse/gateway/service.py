"""The gateway: answers what it owns, routes the rest to a server, relays what comes back.

One :class:`Gateway` serves every frontend (Streamable HTTP, stdio). Frontends turn bytes into
JSON-RPC dicts and a :class:`~roundhouse.gateway.sessions.ClientSession`; the gateway does the
rest and never sees a socket. What it answers itself: ``initialize``, ``ping``,
``server/discover``, the merged lists of the aggregate endpoint, ``logging/setLevel``. What it
routes: calls naming a tool, prompt or resource, to the server that owns the name (the catalog
says which), with the name stripped of its namespace; on a server's own endpoint everything is
passed through as is. Messages an upstream sends on its own are handled in ``relay.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from roundhouse import __version__
from roundhouse.errors import InvalidInput, RoundhouseError, UpstreamError
from roundhouse.events import Event, EventBus
from roundhouse.gateway.catalog import Catalog
from roundhouse.gateway.listing import Lister
from roundhouse.gateway.mrtr import InputBridge, Parked
from roundhouse.gateway.paging import merge_cache_hints, page
from roundhouse.gateway.relay import Relay
from roundhouse.gateway.sessions import Call, ClientSession, Scope, SessionTable
from roundhouse.gateway.tasks import ANONYMOUS, TaskTable
from roundhouse.gateway.upstreams import Instance, InstanceTable, NoInstance, pick
from roundhouse.protocol.eras import (
    DISCOVER_METHOD,
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    LOG_LEVEL_META_KEY,
    MODERN_VERSIONS,
    SERVER_INFO_META_KEY,
    Handshake,
)
from roundhouse.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    Message,
)
from roundhouse.protocol.param_headers import param_headers
from roundhouse.protocol.translate import client_result, upstream_params
from roundhouse.settings import Settings
from roundhouse.upstream.base import UpstreamRpcError

__all__ = ["Gateway", "GatewayError"]

log = logging.getLogger(__name__)

SERVER_INFO: dict[str, Any] = {"name": "roundhouse", "title": "Roundhouse", "version": __version__}
#: What the aggregate endpoint offers its clients.
GATEWAY_CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "logging": {},
    "completions": {},
}
PAGE_SIZE = 500
#: Pages of an upstream's tasks/list followed for one client's tasks/list.
MAX_TASK_PAGES = 20
#: Methods _dispatch answers or treats itself even on a one-server endpoint (tasks/* too).
_GATEWAY_METHODS = frozenset(
    {"ping", DISCOVER_METHOD, "initialize", "subscriptions/listen", "logging/setLevel"}
)


class GatewayError(RoundhouseError):
    """An error the gateway itself answers with, carrying the JSON-RPC code to send."""

    def __init__(self, code: int, message: str, *, data: Any = None) -> None:
        super().__init__(message, data=data)
        self.code = code


class Gateway:
    def __init__(self, instances: InstanceTable, bus: EventBus, settings: Settings) -> None:
        self.instances = instances
        self.bus = bus
        self.settings = settings
        self.sessions = SessionTable()
        self.catalog = Catalog(
            separator=settings.namespace_separator,
            collision=settings.collision_policy,
            max_name_length=settings.max_name_length,
        )
        self.relay = Relay(self)
        self.bridge = InputBridge()
        self.lister = Lister(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Set at shutdown: open listen streams end with their final result.
        self.closed = asyncio.Event()
        #: Where each task a call created lives, and whose it is (``tasks/*``).
        self.tasks = TaskTable()

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.bus.add_listener(self._on_event)
        for slug in self.instances.ready_slugs():
            self.refresh(slug)

    async def close(self) -> None:
        self._closing = True
        self.closed.set()
        self.bridge.close()
        self.bus.remove_listener(self._on_event)
        for session in self.sessions.all():
            self.sessions.close(session.id)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coroutine: Any, name: str) -> None:
        """Run a background job owned by the gateway (cancelled and awaited on close)."""
        if self._closing:
            coroutine.close()
            return
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, event: Event) -> None:
        if event.kind == "instance.ready":
            self.refresh(event.data["server"])
        elif (
            event.kind == "instance.state"
            and event.data["old"] in ("running", "degraded", "unhealthy")
            and event.data["new"] not in ("running", "degraded", "unhealthy")
        ):
            slug = event.data["server"]
            self.relay.instance_gone(event.data["instance"])
            if not self.instances.ready(slug):
                self.lister.withdraw(slug)

    # --- the catalog (kept by gateway/listing.py) ----------------------------------------------

    def refresh(self, slug: str) -> None:
        self.lister.refresh(slug)

    def check_param_headers(
        self, scope: Scope, params: dict[str, Any], headers: list[tuple[bytes, bytes]]
    ) -> str | None:
        return self.lister.check_param_headers(scope, params, headers)

    # --- requests from clients ----------------------------------------------------------------

    def open_session(self, scope: Scope, params: Any) -> tuple[ClientSession, dict[str, Any]]:
        """``initialize``: a new legacy session and the result to answer with."""
        if not isinstance(params, dict):
            raise GatewayError(INVALID_PARAMS, "initialize needs params")
        requested = params.get("protocolVersion")
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE_VERSION
        info = params.get("clientInfo")
        caps = params.get("capabilities")
        session = self.sessions.open(
            scope,
            protocol_version=version,
            client_info=info if isinstance(info, dict) else {},
            capabilities=caps if isinstance(caps, dict) else {},
        )
        server_info, capabilities, instructions = self.describe(scope)
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": server_info,
        }
        if instructions:
            result["instructions"] = instructions
        return session, result

    def describe(self, scope: Scope) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        """serverInfo, capabilities and instructions of an endpoint: the gateway's own on
        ``/mcp``, the server's on its endpoint (it is offered as it is)."""
        if scope.slug is None:
            return SERVER_INFO, GATEWAY_CAPABILITIES, None
        ready = self.instances.ready(scope.slug)
        shake = ready[0].handshake if ready else None
        if shake is None:
            return {"name": scope.slug, "version": "unknown"}, GATEWAY_CAPABILITIES, None
        caps = dict(shake.capabilities)
        info = shake.server_info or {"name": scope.slug, "version": "unknown"}
        return info, caps, shake.instructions

    def discover(self, scope: Scope) -> dict[str, Any]:
        server_info, capabilities, instructions = self.describe(scope)
        result: dict[str, Any] = {
            "supportedVersions": [*MODERN_VERSIONS, *HANDSHAKE_VERSIONS],
            "capabilities": capabilities,
            "resultType": "complete",
            "ttlMs": 0,
            "cacheScope": "public",
            "_meta": {SERVER_INFO_META_KEY: server_info},
        }
        if instructions:
            result["instructions"] = instructions
        return result

    async def request(self, call: Call, message: Message) -> Message:
        """Serve one client request; always returns a response (result or error)."""
        try:
            direct = self._direct(call, message)
            if direct is not None:
                # Straight to the one server (what _dispatch would come to, coroutines less).
                result = await self._forward(call, direct[0], message, direct[1])
            else:
                result = await self._dispatch(call, message)
        # One name per clause: compiled (mypyc), a name shared by clauses of different types
        # is one typed variable, and the second type fails its check.
        except GatewayError as refused:
            return _error(call.client_id, refused.code, refused.message, refused.data)
        except UpstreamRpcError as answered:
            return _error(call.client_id, answered.code, answered.message, answered.data)
        except InvalidInput as invalid:
            return _error(call.client_id, INVALID_PARAMS, invalid.message, invalid.data)
        except RoundhouseError as failed:
            return _error(call.client_id, failed.code, failed.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error serving %s", call.method)
            return _error(call.client_id, INTERNAL_ERROR, "internal error")
        return {"jsonrpc": "2.0", "id": call.client_id, "result": result}

    def _direct(self, call: Call, message: Message) -> tuple[str, dict[str, Any] | None] | None:
        """The server a request goes straight to and the params to send it, for the common
        calls: any request of a one-server endpoint that the gateway does not answer itself,
        and a ``tools/call`` of a known tool on the aggregate one. None for everything else,
        which ``_dispatch`` serves (and refuses, with its reasons)."""
        method = call.method
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            return None
        if method in _GATEWAY_METHODS or method.startswith("tasks/"):
            return None
        slug = call.session.scope.slug
        if slug is not None:
            return slug, params
        if method == "tools/call" and params is not None:
            return self._named(method, params)
        return None

    def _named(self, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """A ``tools/call`` or ``prompts/get`` on the aggregate endpoint: the server that has
        the name and the params with the server's own name; None for an unknown name."""
        name = params.get("name")
        if not isinstance(name, str):
            return None
        resolve = (
            self.catalog.resolve_tool if method == "tools/call" else self.catalog.resolve_prompt
        )
        found = resolve(name)
        return None if found is None else (found[0], {**params, "name": found[1]})

    async def _dispatch(self, call: Call, message: Message) -> dict[str, Any]:
        method = call.method
        session = call.session
        scope = session.scope
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise GatewayError(INVALID_PARAMS, "params must be an object")
        if method == "ping":
            if session.era == "modern":
                raise GatewayError(METHOD_NOT_FOUND, "ping is not part of 2026-07-28")
            return {}
        if method == DISCOVER_METHOD:
            return self.discover(scope)
        if method == "initialize":
            if session.era == "modern":
                raise GatewayError(METHOD_NOT_FOUND, "initialize is not part of 2026-07-28")
            raise GatewayError(INVALID_PARAMS, "the session is already initialized")
        if method == "subscriptions/listen":
            if session.era != "modern":
                raise GatewayError(METHOD_NOT_FOUND, "subscriptions/listen is a 2026-07-28 method")
            return await self.relay.listen(call, params or {})
        if method == "logging/setLevel" and session.era == "legacy":
            level = params.get("level") if params else None
            if not isinstance(level, str):
                raise GatewayError(INVALID_PARAMS, "logging/setLevel needs a level")
            session.log_level = level
            await self._fan_out(scope, method, params)
            return {}
        if method.startswith("tasks/"):
            return await self._task_request(call, message, params or {})
        if scope.slug is not None:
            return await self._forward(call, scope.slug, message, params)
        return await self._aggregate(call, message, params or {})

    async def _aggregate(
        self, call: Call, message: Message, params: dict[str, Any]
    ) -> dict[str, Any]:
        method = call.method
        catalog = self.catalog
        if method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list"):
            items, key = {
                "tools/list": (catalog.tools, "tools"),
                "prompts/list": (catalog.prompts, "prompts"),
                "resources/list": (catalog.resources, "resources"),
                "resources/templates/list": (catalog.templates, "resourceTemplates"),
            }[method]
            cursor = params.get("cursor")
            if cursor is not None and not isinstance(cursor, str):
                raise GatewayError(INVALID_PARAMS, "cursor must be a string")
            chunk, next_cursor = page(items(), cursor, PAGE_SIZE, catalog.version)
            result: dict[str, Any] = {key: chunk}
            if next_cursor is not None:
                result["nextCursor"] = next_cursor
            if call.session.era == "modern":
                ttl, scope = merge_cache_hints([])
                result.update(resultType="complete", ttlMs=ttl, cacheScope=scope)
                result["_meta"] = {SERVER_INFO_META_KEY: SERVER_INFO}
            return result
        if method in ("tools/call", "prompts/get"):
            name = params.get("name")
            if not isinstance(name, str):
                raise GatewayError(INVALID_PARAMS, f"{method} needs a name")
            found = self._named(method, params)
            if found is None:
                what = "tool" if method == "tools/call" else "prompt"
                raise GatewayError(INVALID_PARAMS, f"unknown {what}: {name!r}")
            return await self._forward(call, found[0], message, found[1])
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            uri = params.get("uri")
            if not isinstance(uri, str):
                raise GatewayError(INVALID_PARAMS, f"{method} needs a uri")
            owner = catalog.resolve_resource(uri)
            if owner is None:
                raise GatewayError(INVALID_PARAMS, f"unknown resource: {uri!r}")
            if method == "resources/subscribe":
                call.session.subscriptions.add(uri)
            elif method == "resources/unsubscribe":
                call.session.subscriptions.discard(uri)
            return await self._forward(call, owner, message, params)
        if method == "completion/complete":
            return await self._complete(call, message, params)
        raise GatewayError(METHOD_NOT_FOUND, f"method not found: {method}")

    async def _complete(
        self, call: Call, message: Message, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise GatewayError(INVALID_PARAMS, "completion/complete needs a ref")
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            found = self.catalog.resolve_prompt(ref["name"])
            if found is None:
                raise GatewayError(INVALID_PARAMS, f"unknown prompt: {ref['name']!r}")
            slug, name = found
            return await self._forward(
                call, slug, message, {**params, "ref": {**ref, "name": name}}
            )
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            owner = self.catalog.resolve_resource(ref["uri"])
            if owner is None:
                raise GatewayError(INVALID_PARAMS, f"unknown resource: {ref['uri']!r}")
            return await self._forward(call, owner, message, params)
        raise GatewayError(INVALID_PARAMS, "ref must name a prompt or a resource")

    async def _task_request(
        self, call: Call, message: Message, params: dict[str, Any]
    ) -> dict[str, Any]:
        """``tasks/*``: only the caller's own tasks, each at the instance that holds it."""
        session = call.session
        owner = ANONYMOUS if session.era == "modern" else session.id
        if call.method == "tasks/list":
            return await self._list_tasks(owner, session.scope.slug)
        task_id = params.get("taskId")
        found = self.tasks.route(task_id, owner, session.scope.slug)
        if found is None:
            raise GatewayError(INVALID_PARAMS, f"unknown task: {task_id!r}")
        return await self._forward(call, found.slug, message, params, instance_id=found.instance)

    async def _list_tasks(self, owner: str, slug: str | None) -> dict[str, Any]:
        """The owner's tasks as their instances report them now; the upstream's list holds
        every session's tasks, so it is filtered, and its pages are followed (bounded)."""
        mine = self.tasks.owned(owner, slug)
        listed: list[dict[str, Any]] = []
        for task_slug, instance_id in self.tasks.instances(mine):
            instance = next(
                (i for i in self.instances.ready(task_slug) if i.id == instance_id), None
            )
            if instance is None:
                continue
            cursor: Any = None
            for _ in range(MAX_TASK_PAGES):
                answer = await self.lister.upstream_request(
                    instance,
                    "tasks/list",
                    {"cursor": cursor} if cursor is not None else None,
                    timeout=instance.call_timeout,
                )
                tasks = answer.get("tasks")
                if not isinstance(tasks, list):
                    break
                listed.extend(t for t in tasks if isinstance(t, dict) and t.get("taskId") in mine)
                cursor = answer.get("nextCursor")
                if not isinstance(cursor, str):
                    break
        return {"tasks": listed}

    async def _forward(
        self,
        call: Call,
        slug: str,
        message: Message,
        params: dict[str, Any] | None,
        *,
        instance_id: str | None = None,
    ) -> dict[str, Any]:
        """Send the request to one instance of ``slug`` (``instance_id``: that one, or an
        error if it is gone) and shape its answer for the client."""
        session = call.session
        state = params.get("requestState") if params else None
        parked = self.bridge.take(state) if session.era == "modern" else None
        if parked is not None:
            return await self._resume(call, slug, parked, params or {})
        if instance_id is not None:
            instance = self._holding(slug, instance_id)
        else:
            owner = self.bridge.state_owner.get(state) if isinstance(state, str) else None
            instance = self._pick(session, slug, owner)
        connection, shake = instance.connection, instance.handshake
        if connection is None or shake is None:
            raise NoInstance(f"server {slug!r} has no ready instance")
        call.slug, call.instance = slug, instance.id
        token = None
        meta = params.get("_meta") if params else None
        if isinstance(meta, dict) and "progressToken" in meta:
            call.progress_token = meta["progressToken"]
            token = self.relay.track_progress(call)
        # A gateway-wide id: an HTTP upstream tags what it sends about this request with it,
        # which tells the relay exactly whose call a sampling request belongs to.
        outgoing: Message = {"jsonrpc": "2.0", "id": call.upstream_id, "method": call.method}
        if meta is None and token is None and shake.era != "modern":
            sent = params  # what upstream_params would return: nothing to change
        else:
            sent = upstream_params(
                params,
                upstream_era=shake.era,
                upstream_version=shake.protocol_version,
                client_info=session.client_info or SERVER_INFO,
                client_capabilities=session.capabilities,
                progress_token=token,
                log_level=_log_level(session, meta),
            )
        if sent is not None:
            outgoing["params"] = sent
        self.relay.call_started(call)
        instance.outstanding += 1
        try:
            extra = None
            if shake.era == "modern" and call.method == "tools/call" and sent is not None:
                mapping = self.lister.param_maps.get(slug, {}).get(str(sent.get("name")))
                arguments = sent.get("arguments")
                if mapping and isinstance(arguments, dict):
                    extra = dict(param_headers(mapping, arguments))
            if session.era == "modern" and shake.era == "legacy":
                # The upstream may ask for input mid-call: the bridge owns the upstream call.
                upstream = asyncio.ensure_future(
                    connection.send_request_raw(outgoing, instance.call_timeout)
                )
                answer = await self.bridge.wait(call, upstream, instance.id)
                if "resultType" in answer:
                    return answer
                response = answer
            else:
                response = await connection.send_request_raw(outgoing, instance.call_timeout, extra)
        finally:
            instance.outstanding -= 1
            self.relay.call_ended(call, token)
        return self._shape(call, slug, shake, response)

    async def _resume(
        self, call: Call, slug: str, parked: Parked, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The retry of a 2026-07-28 client whose call was parked: answer the upstream's
        requests with its inputResponses, then wait on the same upstream call."""
        problem = self.bridge.resume(parked, params.get("inputResponses"), self.relay.answer)
        if problem is not None:
            raise GatewayError(INVALID_PARAMS, problem)
        instance = next((i for i in self.instances.ready(slug) if i.id == parked.instance), None)
        shake = instance.handshake if instance is not None else None
        if shake is None:
            parked.upstream.cancel()
            raise NoInstance(f"the instance of {slug!r} holding this request is gone")
        call.slug, call.instance = slug, parked.instance
        self.relay.call_started(call)
        try:
            answer = await self.bridge.wait(call, parked.upstream, parked.instance)
        finally:
            self.relay.call_ended(call, None)
        if "resultType" in answer:
            return answer
        return self._shape(call, slug, shake, answer)

    def _shape(self, call: Call, slug: str, shake: Handshake, response: Message) -> dict[str, Any]:
        """An upstream response as the client's result (or its error raised)."""
        session = call.session
        error = response.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise UpstreamRpcError(
                    int(error.get("code", INTERNAL_ERROR)),
                    str(error.get("message", "")),
                    data=error.get("data"),
                    method=call.method,
                )
            raise GatewayError(INTERNAL_ERROR, f"{slug} answered with a malformed error")
        result = response.get("result")
        if not isinstance(result, dict):
            raise GatewayError(INTERNAL_ERROR, f"{slug} answered without a result object")
        if "task" in result and call.method == "tools/call":
            owner = ANONYMOUS if session.era == "modern" else session.id
            self.tasks.learn(result["task"], slug, call.instance or "", owner)
        state = result.get("requestState")
        if result.get("resultType") == "input_required" and isinstance(state, str):
            # The retry must reach the instance that holds this state.
            self.bridge.state_owner[state] = call.instance or ""
        if session.era == "legacy" and shake.era == "legacy":
            return result
        server_info = None
        if session.era == "modern":
            server_info = SERVER_INFO if session.scope.slug is None else shake.server_info
        return client_result(
            call.method,
            result,
            client_era=session.era,
            upstream_era=shake.era,
            server_info=server_info,
        )

    def _pick(self, session: ClientSession, slug: str, owner: str | None = None) -> Instance:
        ready = self.instances.ready_table.get(slug)
        if not ready:
            if not self.instances.known(slug):
                raise GatewayError(INVALID_PARAMS, f"no server named {slug!r}")
            raise NoInstance(f"server {slug!r} has no ready instance (it may be restarting)")
        if len(ready) == 1 and owner is None:
            # One instance: nothing to balance. A legacy session still records it, so it
            # sticks to it when a second one comes up.
            only = ready[0]
            if session.era == "legacy" and session.sticky.get(slug) != only.id:
                session.sticky[slug] = only.id
            return only
        if session.era == "modern":
            return pick(ready, owner, era="modern")
        sticky = session.sticky.get(slug)
        instance = pick(ready, sticky, era="legacy")
        if sticky is None or instance.id != sticky:
            session.sticky[slug] = instance.id
        return instance

    def _holding(self, slug: str, instance_id: str) -> Instance:
        for instance in self.instances.ready(slug):
            if instance.id == instance_id:
                return instance
        raise NoInstance(
            f"the instance of {slug!r} that holds this task is gone (its tasks went with it)"
        )

    async def _fan_out(self, scope: Scope, method: str, params: dict[str, Any] | None) -> None:
        """Send a request to one instance of every server in scope; failures are logged."""
        slugs = [scope.slug] if scope.slug is not None else self.instances.ready_slugs()
        for slug in slugs:
            for instance in self.instances.ready(slug):
                shake = instance.handshake
                if shake is None or shake.era != "legacy":
                    continue
                try:
                    await self.lister.upstream_request(instance, method, params, timeout=5.0)
                except (UpstreamError, TimeoutError) as exc:
                    log.debug("%s on %s failed: %s", method, instance.id, exc)

    def cancel(self, session: ClientSession, request_id: Any) -> None:
        """A client's ``notifications/cancelled``: stop serving that request."""
        call = session.calls.get(request_id)
        if call is not None and call.task is not None and not call.task.done():
            call.cancelled_by_client = True
            call.task.cancel()


def _log_level(session: ClientSession, meta: Any) -> str | None:
    """The level a modern upstream should log at for this request: the modern client's own
    ``_meta`` level, or what a legacy client set with ``logging/setLevel``."""
    if isinstance(meta, dict) and isinstance(meta.get(LOG_LEVEL_META_KEY), str):
        return str(meta[LOG_LEVEL_META_KEY])
    return session.log_level


def _error(request_id: Any, code: int, message: str, data: Any = None) -> Message:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}
