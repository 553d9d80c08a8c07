"""What upstreams send on their own, carried back to the right client.

- ``notifications/progress``: the gateway gave the upstream a token of its own for each call
  that asked for progress; the notification goes to that call, with the client's token back.
- ``notifications/message`` (logs): to the call in flight on that instance if there is one,
  else to the GET streams of the sessions that see the server.
- ``notifications/*/list_changed``: the catalog is re-listed, then every session that sees the
  server is told (on ``/mcp`` by the gateway's own list_changed, once the catalog changed).
- ``notifications/resources/updated``: to the sessions subscribed to that URI.
- Requests (sampling, elicitation, roots): to the client session whose call caused them — the
  most recent call in flight on that instance whose client declared the capability — under a
  gateway id; the client's answer goes back under the upstream's id. A request nobody can
  answer gets a JSON-RPC error at once, so the upstream never waits in vain. ``ping`` is
  answered here.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from roundhouse.errors import UpstreamError
from roundhouse.gateway.sessions import Call, ClientSession
from roundhouse.protocol.jsonrpc import METHOD_NOT_FOUND, Message
from roundhouse.upstream.base import RELATED_KEY, Connection

if TYPE_CHECKING:
    from roundhouse.gateway.service import Gateway

__all__ = ["Relay"]

log = logging.getLogger(__name__)

#: Which client capability a server-to-client request needs.
CAPABILITY_OF = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
SUBSCRIPTION_ID_META_KEY = "io.modelcontextprotocol/subscriptionId"
_LISTEN_FLAGS = ("toolsListChanged", "promptsListChanged", "resourcesListChanged")
_FLAG_OF = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}
_LIST_CHANGED = {
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
}


class _Pending:
    __slots__ = ("connection", "instance", "session", "upstream_id")

    def __init__(
        self, connection: Connection, instance: str, upstream_id: Any, session: ClientSession
    ) -> None:
        self.connection = connection
        self.instance = instance
        self.upstream_id = upstream_id
        self.session = session


class _Listener:
    """One open ``subscriptions/listen`` stream of a 2026-07-28 client."""

    __slots__ = ("call", "honored", "meta")

    def __init__(self, call: Call, honored: dict[str, Any], meta: dict[str, Any]) -> None:
        self.call = call
        self.honored = honored
        self.meta = meta


def _untagged(message: Message) -> Message:
    """A notification without the subscription tag of the upstream's listen stream."""
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("_meta"), dict):
        return message
    meta = {k: v for k, v in params["_meta"].items() if k != SUBSCRIPTION_ID_META_KEY}
    rest = {k: v for k, v in params.items() if k != "_meta"}
    if meta:
        rest["_meta"] = meta
    return {**message, "params": rest}


class Relay:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._progress: dict[str, Call] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._listeners: set[_Listener] = set()
        #: Every call in flight by the id it carries upstream, oldest first (insertion order).
        #: The one map a call touches: the calls of one instance, asked for only when an
        #: upstream sends something that names no call (_calls_on), are found by a scan.
        self._by_upstream_id: dict[str, Call] = {}

    # --- bookkeeping of calls -----------------------------------------------------------------

    def track_progress(self, call: Call) -> str:
        token = self._gateway.sessions.next_progress_token()
        self._progress[token] = call
        return token

    def call_started(self, call: Call) -> None:
        self._by_upstream_id[call.upstream_id] = call

    def call_ended(self, call: Call, token: str | None) -> None:
        self._by_upstream_id.pop(call.upstream_id, None)
        if token is not None:
            self._progress.pop(token, None)

    def _calls_on(self, instance: str) -> Iterator[Call]:
        """The calls in flight on one instance, most recent first."""
        for call in reversed(self._by_upstream_id.values()):
            if call.instance == instance:
                yield call

    def instance_gone(self, instance: str) -> None:
        for key in [k for k, p in self._pending.items() if p.instance == instance]:
            del self._pending[key]

    # --- from upstreams -----------------------------------------------------------------------

    def upstream_message(self, slug: str, instance: str, message: Message) -> None:
        """The hook the supervisor's connections call (``InstanceContext.on_message``)."""
        method = message.get("method")
        if not isinstance(method, str):
            return
        related = None
        if RELATED_KEY in message:
            message = dict(message)
            related = self._by_upstream_id.get(message.pop(RELATED_KEY))
        if "id" in message:
            self._upstream_request(slug, instance, message, method, related)
            return
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if method == "notifications/progress":
            call = self._progress.get(str(params.get("progressToken")))
            if call is not None:
                call.deliver(
                    {
                        "jsonrpc": "2.0",
                        "method": method,
                        "params": {**params, "progressToken": call.progress_token},
                    }
                )
        elif method in _LIST_CHANGED:
            self._gateway.refresh(slug)
            self._to_transparent_sessions(slug, _untagged(message))
            self._to_transparent_listeners(slug, method)
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            plain = _untagged(message)
            for session in self._sessions_seeing(slug):
                if uri in session.subscriptions or session.scope.slug == slug:
                    session.push(plain)
            self._to_listeners(slug, method, {"uri": uri})
        elif method == "notifications/subscriptions/acknowledged":
            pass  # the ack of the gateway's own listen stream to a modern upstream
        elif method == "notifications/message":
            latest = next(self._calls_on(instance), None) if related is None else related
            if latest is not None:
                latest.deliver(message)
            else:
                for session in self._sessions_seeing(slug):
                    session.push(message)
        elif method == "notifications/cancelled":
            self._upstream_cancelled(params)
        else:
            self._to_transparent_sessions(slug, message)

    def _upstream_request(
        self, slug: str, instance: str, message: Message, method: str, related: Call | None
    ) -> None:
        connection = self._connection(slug, instance)
        if connection is None:
            return
        if method == "ping":
            self._answer(connection, {"jsonrpc": "2.0", "id": message["id"], "result": {}})
            return
        capability = CAPABILITY_OF.get(method)
        if related is not None and (capability is None or related.session.can(capability)):
            # The upstream said whose call this is (an HTTP upstream's per-request stream).
            if related.session.era == "modern":
                if self._gateway.bridge.ask(related, connection, message):
                    return
            else:
                self._forward_request(related, connection, instance, message)
                return
        modern = self._modern_call(instance, capability)
        if modern is not None and self._gateway.bridge.ask(modern, connection, message):
            return
        target = self._target_call(instance, capability)
        if target is None:
            self._answer(
                connection,
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "error": {
                        "code": METHOD_NOT_FOUND,
                        "message": f"no client session that can answer {method} is waiting on"
                        " this server",
                    },
                },
            )
            return
        self._forward_request(target, connection, instance, message)

    def _forward_request(
        self, target: Call, connection: Connection, instance: str, message: Message
    ) -> None:
        gateway_id = f"rh-{next(self._ids)}"
        self._pending[gateway_id] = _Pending(connection, instance, message["id"], target.session)
        target.deliver({**message, "id": gateway_id})

    def _target_call(self, instance: str, capability: str | None) -> Call | None:
        for call in self._calls_on(instance):
            session = call.session
            if session.era != "legacy":
                continue  # 2026-07-28 clients take no server-to-client requests
            if capability is None or session.can(capability):
                return call
        return None

    def _modern_call(self, instance: str, capability: str | None) -> Call | None:
        """The most recent 2026-07-28 call on the instance that can take this input."""
        for call in self._calls_on(instance):
            session = call.session
            takes_input = session.era == "modern" and call.input_needed is not None
            if takes_input and (capability is None or session.can(capability)):
                return call
        return None

    def _upstream_cancelled(self, params: dict[str, Any]) -> None:
        upstream_id = params.get("requestId")
        for gateway_id, pending in list(self._pending.items()):
            if pending.upstream_id == upstream_id:
                del self._pending[gateway_id]
                pending.session.push(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {**params, "requestId": gateway_id},
                    }
                )

    # --- from clients -------------------------------------------------------------------------

    def client_response(self, session: ClientSession, message: Message) -> bool:
        """A client's answer to a server-to-client request; False if we never asked it."""
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None or pending.session is not session:
            return False
        del self._pending[request_id]  # type: ignore[arg-type]
        answer = {k: v for k, v in message.items() if k in ("jsonrpc", "result", "error")}
        answer["id"] = pending.upstream_id
        self._answer(pending.connection, answer)
        return True

    # --- to clients ---------------------------------------------------------------------------

    def announce_lists_changed(self, slug: str) -> None:
        """The catalog changed because of ``slug``: tell the aggregate sessions."""
        for session in self._gateway.sessions.all():
            if session.scope.slug is None and session.initialized:
                for kind in ("tools", "prompts", "resources"):
                    session.push({"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"})
        for kind in ("tools", "prompts", "resources"):
            self._to_listeners(None, f"notifications/{kind}/list_changed", None)

    # --- 2026-07-28 listen streams ------------------------------------------------------------

    async def listen(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        """Serve ``subscriptions/listen``: acknowledge, then stream what was asked for until
        the client goes away (the frontend cancels the call) or the gateway closes."""
        wanted = params.get("notifications")
        wanted = wanted if isinstance(wanted, dict) else {}
        honored: dict[str, Any] = {key: True for key in _LISTEN_FLAGS if wanted.get(key) is True}
        uris = wanted.get("resourceSubscriptions")
        if isinstance(uris, list) and uris:
            honored["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]
        meta = {SUBSCRIPTION_ID_META_KEY: call.client_id}
        listener = _Listener(call, honored, meta)
        self._listeners.add(listener)
        try:
            call.deliver(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/subscriptions/acknowledged",
                    "params": {"notifications": honored, "_meta": meta},
                }
            )
            await self._gateway.closed.wait()
        finally:
            self._listeners.discard(listener)
        return {"_meta": meta, "resultType": "complete"}

    def _to_listeners(self, slug: str | None, method: str, params: dict[str, Any] | None) -> None:
        """Deliver an event to the listen streams that asked for it: ``slug`` None is the
        gateway's own catalog (aggregate streams), else one server's (both kinds of stream)."""
        flag = _FLAG_OF.get(method)
        uri = params.get("uri") if params else None
        for listener in list(self._listeners):
            scope = listener.call.session.scope
            if (slug is None and scope.slug is not None) or (
                slug is not None and scope.slug not in (None, slug)
            ):
                continue
            honored = listener.honored
            if flag is not None and honored.get(flag) is not True:
                continue
            if flag is None and uri not in honored.get("resourceSubscriptions", ()):
                continue
            listener.call.deliver(
                {
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": {**(params or {}), "_meta": listener.meta},
                }
            )

    def _to_transparent_listeners(self, slug: str, method: str) -> None:
        flag = _FLAG_OF[method]
        for listener in list(self._listeners):
            if listener.call.session.scope.slug == slug and listener.honored.get(flag) is True:
                listener.call.deliver(
                    {"jsonrpc": "2.0", "method": method, "params": {"_meta": listener.meta}}
                )

    def _to_transparent_sessions(self, slug: str, message: Message) -> None:
        for session in self._gateway.sessions.all():
            if session.scope.slug == slug:
                session.push(message)

    def _sessions_seeing(self, slug: str) -> list[ClientSession]:
        return [s for s in self._gateway.sessions.all() if s.scope.slug in (None, slug)]

    def _connection(self, slug: str, instance: str) -> Connection | None:
        for candidate in self._gateway.instances.ready(slug):
            if candidate.id == instance:
                return candidate.connection
        return None

    def answer(self, connection: Connection, message: Message) -> None:
        self._answer(connection, message)

    def _answer(self, connection: Connection, message: Message) -> None:
        async def send() -> None:
            try:
                await connection.send(message)
            except UpstreamError as exc:
                log.debug("could not answer the upstream: %s", exc)

        self._gateway.spawn(send(), "answer upstream")
