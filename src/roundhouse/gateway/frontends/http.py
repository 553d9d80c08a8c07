"""The Streamable HTTP frontend: ``/mcp`` (every server) and ``/servers/{slug}/mcp`` (one).

A raw ASGI app, kept off FastAPI on purpose: this is the hot path, and every request pays for
what runs here. Per request: one pass over the headers, one orjson parse, a task for the call,
one orjson dump. The response is JSON unless the upstream sends something about the call before
it answers (progress, a log line, a sampling request): then it becomes an SSE stream.

Both protocol eras, told apart the way the SDK does it: an ``MCP-Protocol-Version`` header that
is not a handshake-era version routes to the 2026-07-28 path (self-describing requests, no
session); everything else is the legacy path (``initialize``, ``Mcp-Session-Id``, GET stream,
DELETE).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from roundhouse.gateway.frontends.exchange import DisconnectWatch, Exchange
from roundhouse.gateway.frontends.headers import RequestHeaders, read_headers
from roundhouse.gateway.frontends.messages import (
    ACCEPTED,
    MODERN_ERROR_STATUS,
    Answer,
    Reject,
    accepts_both,
    parse_message,
    refuse,
)
from roundhouse.gateway.frontends.wire import (
    JSON_HEADERS,
    SSE_HEADERS,
    decode_header,
    error,
    event,
    reply,
    wait_disconnect,
)
from roundhouse.gateway.service import Gateway
from roundhouse.gateway.sessions import Call, ClientSession
from roundhouse.gateway.sessions import Scope as Endpoint
from roundhouse.protocol.eras import (
    CLIENT_CAPABILITIES_META_KEY,
    HANDSHAKE_VERSIONS,
    MODERN_VERSIONS,
    NAME_BEARING_METHODS,
    PROTOCOL_VERSION_META_KEY,
)
from roundhouse.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
)
from roundhouse.security.origin import OriginPolicy

__all__ = ["McpHttpApp", "is_mcp_path"]

_SERVER_PATH = re.compile(r"^/servers/([a-z0-9][a-z0-9-]{0,39})/mcp/?$")
_PATHS_KEPT = 1024
#: A quiet GET stream sends a comment this often, so proxies keep it open.
KEEPALIVE_SECONDS = 15.0
#: Distinct Origin/Host values whose verdict is remembered (a client sends the same ones on
#: every request); past this the cache starts over, so hostile variety cannot grow it.
_VERDICTS_KEPT = 256


#: See _settle_heap.
YOUNG_GC_THRESHOLD = 10_000


def _settle_heap() -> None:
    """Start-up is over when the first MCP request arrives: move everything alive now (modules,
    the app, the registry: ~130,000 objects) out of the cyclic collector's sight.

    Under load, calls in flight survive young collections and push the collector into full
    ones; a full collection over the start-up heap stopped every request for ~100 ms (the p99
    at 64 connections). Frozen objects are never scanned, so a full collection walks only what
    requests made. No ``gc.collect()`` first: over that heap it would add its own pause to the
    first call, for the little start-up garbage it would free.

    The young generation's threshold is raised from 700 to 10,000 allocations: a call makes
    ~35 tracked objects and leaves no cycle (freed by reference counting), so at 700 the
    collector ran every ~20 calls, each time scanning and promoting the calls in flight, which
    fed the older generations' full collections (up to 13 ms at 64 connections). Cyclic garbage
    from elsewhere (an exception's traceback) waits a little longer, nothing more.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)


def is_mcp_path(path: str) -> bool:
    return path in ("/mcp", "/mcp/") or (
        path.startswith("/servers/") and path.endswith(("/mcp", "/mcp/"))
    )


class McpHttpApp:
    """The MCP endpoints; any other path (or a non-HTTP scope) goes to ``fallback``, if given,
    else is a 404."""

    def __init__(
        self,
        gateway: Gateway,
        policy: OriginPolicy,
        *,
        max_body_bytes: int,
        fallback: ASGIApp | None = None,
    ) -> None:
        self.gateway = gateway
        self.fallback = fallback
        self.policy = policy
        self.max_body_bytes = max_body_bytes
        self._watch = DisconnectWatch()
        #: (Origin, Host) -> why refused, "" when allowed (see _judge).
        self._verdicts: dict[tuple[bytes | None, bytes | None], str] = {}
        #: The last pair judged and its verdict (compared before the dict is searched).
        self._last_origin: bytes | None = None
        self._last_host: bytes | None = None
        self._last_verdict = self._judge((None, None))
        #: Accept header -> whether it takes both JSON and SSE (a client sends the same one on
        #: every request; bounded as _verdicts is).
        self._accepts: dict[bytes, bool] = {}
        self._cap_digits = len(str(max_body_bytes))
        #: Request path -> the endpoint it names (see _endpoint).
        self._endpoints: dict[str, Endpoint] = {}
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            endpoint = self._endpoint(path)
            if endpoint is None:
                if self.fallback is not None and not is_mcp_path(path):
                    await self.fallback(scope, receive, send)
                else:
                    await reply(send, 404, error(None, INVALID_REQUEST, "no such MCP endpoint"))
                return
        if not self._started:
            self._started = True
            _settle_heap()
        headers = read_headers(scope["headers"])
        refusal = self._refusal(endpoint, headers)
        if refusal is not None:
            status, text = refusal
            await reply(send, status, error(None, INVALID_REQUEST, text))
            return
        if scope["method"] != "POST":
            await self._not_post(scope["method"], endpoint, headers, receive, send)
            return
        # A POST, the common case, in this one coroutine: its checks are plain functions, and
        # only the body, the call and the answer are awaited (each coroutine between the server
        # and the upstream cost ~2,000 instructions a call and its share of the caches).
        try:
            self._check_post(headers)
            event = await receive()
            body = event.get("body", b"")
            if event.get("more_body", False) or event["type"] != "http.request":
                body = await self._read_rest(event, receive)
            elif len(body) > self.max_body_bytes:
                raise Reject(413, INVALID_REQUEST, f"body over {self.max_body_bytes} bytes")
            message = parse_message(body)
            version = headers.protocol_version
            if version is not None and version.decode("latin-1") not in HANDSHAKE_VERSIONS:
                routed = self._modern(endpoint, headers, message, scope["headers"])
            else:
                routed = self._legacy(endpoint, headers, message)
        except Reject as rejection:
            await refuse(send, rejection)
            return
        if isinstance(routed, Answer):
            await reply(send, routed.status, routed.payload, routed.headers)
            return
        # The call: answered with JSON, or with SSE once something about it arrives
        # (``exchange.py``).
        session = routed
        request_id = message["id"]
        call = Call(session, request_id, message["method"])
        task = asyncio.current_task()
        call.task = task
        exchange = Exchange(call, send, receive)
        call.on_first_related = exchange.start_stream
        legacy = session.era == "legacy"
        if legacy:
            session.calls[request_id] = call
        watch = self._watch
        # The task's loop, not get_running_loop() again: on 3.11 that asks the kernel for
        # the pid every time.
        watch.add(exchange, task.get_loop() if task is not None else asyncio.get_running_loop())
        try:
            try:
                response = await self.gateway.request(call, message)
            except asyncio.CancelledError:
                if not (call.cancelled_by_client or exchange.client_gone) or task is None:
                    raise
                # Our own cancellation, for the client: this task goes on to answer.
                task.uncancel()
                if exchange.client_gone:
                    return
                response = error(request_id, INVALID_REQUEST, "request cancelled")
            if exchange.streaming:
                await exchange.finish_stream(response)
                return
            status = 200
            if not legacy and "error" in response:
                status = MODERN_ERROR_STATUS.get(response["error"].get("code"), 200)
            # wire.reply, written out: one coroutine less per call. No Content-Length on
            # HTTP/1.1: the server then frames the one body as a chunk, where a length header
            # costs it two regex checks, a lower() and an int() per answer (~2 µs of ~48 at 64
            # connections, docs/PERFORMANCE.md); HTTP/1.0 has no chunks.
            answer = orjson.dumps(response)
            headers_out = JSON_HEADERS
            if scope["http_version"] == "1.0":
                headers_out = [*JSON_HEADERS, (b"content-length", str(len(answer)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers_out})
            await send({"type": "http.response.body", "body": answer})
        finally:
            watch.discard(exchange)
            exchange.close()
            # Break the cycles call -> task -> this frame -> call and call -> exchange -> call,
            # so a finished call is freed at once, not by the cyclic GC (whose pauses show in
            # the tail latency at these rates).
            call.on_first_related = None
            call.task = None
            if legacy:
                session.calls.pop(request_id, None)

    def _refusal(self, endpoint: Endpoint, headers: RequestHeaders) -> tuple[int, str] | None:
        """Why a request is refused before its method is looked at (a foreign Origin or Host,
        a server that does not exist), as (HTTP status, message); None when it may go on."""
        if headers.earlier is not None and not self._earlier_allowed(headers.earlier):
            return 403, "origin not allowed"
        origin, host = headers.origin, headers.host
        if origin == self._last_origin and host == self._last_host:
            verdict = self._last_verdict  # the same client as last time: the usual case
        else:
            pair = (origin, host)
            found = self._verdicts.get(pair)
            verdict = self._judge(pair) if found is None else found
            self._last_origin, self._last_host, self._last_verdict = origin, host, verdict
        if verdict:
            return 403, verdict
        slug = endpoint.slug
        if (
            slug is not None
            and slug not in self.gateway.instances.ready_table
            and not self.gateway.instances.known(slug)
        ):
            return 404, f"no server named {slug!r}"
        return None

    async def _not_post(
        self,
        method: str,
        endpoint: Endpoint,
        headers: RequestHeaders,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            if method == "GET":
                await self._get(endpoint, headers, receive, send)
            elif method == "DELETE":
                await self._delete(endpoint, headers, send)
            else:
                await reply(
                    send,
                    405,
                    error(None, INVALID_REQUEST, "method not allowed"),
                    [(b"allow", b"GET, POST, DELETE")],
                )
        except Reject as rejection:
            await refuse(send, rejection)

    def _earlier_allowed(self, earlier: list[tuple[bytes, bytes]]) -> bool:
        """Whether every copy of Origin and Host but the last (judged with the rest) passes."""
        return all(self._origin_ok(name, value) for name, value in earlier)

    def _endpoint(self, path: str) -> Endpoint | None:
        """The endpoint a path names, None for none; remembered (a client sends the same path
        on every request), up to _PATHS_KEPT paths that exist."""
        if path in ("/mcp", "/mcp/"):
            endpoint = Endpoint(None)
        else:
            match = _SERVER_PATH.match(path)
            if match is None:
                return None
            endpoint = Endpoint(match.group(1))
        if len(self._endpoints) >= _PATHS_KEPT:
            self._endpoints.clear()
        self._endpoints[path] = endpoint
        return endpoint

    def _origin_ok(self, name: bytes, value: bytes | None) -> bool:
        text = value.decode("latin-1") if value is not None else None
        if name == b"origin":
            return self.policy.origin_allowed(text)
        return self.policy.host_allowed(text)

    def _judge(self, pair: tuple[bytes | None, bytes | None]) -> str:
        """Why an (Origin, Host) pair is refused, ``""`` when it is allowed; remembered, since
        a client sends the same pair on every request."""
        origin, host = pair
        if not self._origin_ok(b"origin", origin):
            verdict = "origin not allowed"
        elif not self._origin_ok(b"host", host):
            verdict = "host not allowed"
        else:
            verdict = ""
        if len(self._verdicts) >= _VERDICTS_KEPT:
            self._verdicts.clear()
        self._verdicts[pair] = verdict
        return verdict

    # --- POST ---------------------------------------------------------------------------------

    def _check_post(self, headers: RequestHeaders) -> None:
        """The headers a POST must carry; a body announced over the cap is refused unread."""
        accept = headers.accept or b""
        verdict = self._accepts.get(accept)
        if verdict is None:
            verdict = accepts_both(accept)
            if len(self._accepts) >= _VERDICTS_KEPT:
                self._accepts.clear()
            self._accepts[accept] = verdict
        if not verdict:
            raise Reject(
                406, INVALID_REQUEST, "Accept must list application/json and text/event-stream"
            )
        content_type = headers.content_type or b""
        if not content_type.startswith(b"application/json"):
            raise Reject(415, INVALID_REQUEST, "Content-Type must be application/json")
        length = headers.content_length
        # Fewer digits than the cap has is under it, and the HTTP parser (httptools, h11)
        # has already refused a Content-Length that is not a number: only a long one is read.
        if length is not None and len(length) >= self._cap_digits:
            try:
                if int(length) > self.max_body_bytes:
                    raise Reject(413, INVALID_REQUEST, f"body over {self.max_body_bytes} bytes")
            except ValueError:
                raise Reject(400, INVALID_REQUEST, "invalid Content-Length") from None

    async def _read_rest(self, event: AsgiMessage, receive: Receive) -> bytes:
        """A body that came in more than one piece (or not at all: the client left), within
        the cap."""
        chunks: list[bytes] = []
        size = 0
        while True:
            if event["type"] == "http.disconnect":
                raise Reject(400, INVALID_REQUEST, "client went away")
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise Reject(413, INVALID_REQUEST, f"body over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not event.get("more_body", False):
                return b"".join(chunks)
            event = await receive()

    def _legacy(
        self, endpoint: Endpoint, headers: RequestHeaders, message: Message
    ) -> ClientSession | Answer:
        """The session a legacy request is served in, or the answer it gets at once."""
        session_id = headers.session_id
        method = message.get("method")
        if method == "initialize" and "id" in message:
            if session_id is not None:
                raise Reject(400, INVALID_REQUEST, "initialize must not carry a session id")
            try:
                session, result = self.gateway.open_session(endpoint, message.get("params"))
            except Exception as exc:
                code = getattr(exc, "code", INVALID_PARAMS)
                return Answer(200, error(message.get("id"), code, str(exc)))
            return Answer(
                200,
                {"jsonrpc": "2.0", "id": message["id"], "result": result},
                [(b"mcp-session-id", session.id.encode())],
            )
        if session_id is None:
            if method == "server/discover" and "id" in message:
                # A probe without the 2026 headers: answer it, it costs nothing.
                result = self.gateway.discover(endpoint)
                return Answer(200, {"jsonrpc": "2.0", "id": message["id"], "result": result})
            raise Reject(400, INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id")
        found = self.gateway.sessions.get(session_id.decode("latin-1"), endpoint)
        if found is None:
            raise Reject(404, -32001, "Session not found")
        if "method" not in message:
            # A client's answer to a server-to-client request.
            self.gateway.relay.client_response(found, message)
            return ACCEPTED
        if not isinstance(method, str):
            raise Reject(400, INVALID_REQUEST, "Invalid Request: method must be a string")
        if "id" not in message:
            self._notification(found, method, message)
            return ACCEPTED
        return found

    def _notification(self, session: ClientSession, method: str, message: Message) -> None:
        params = message.get("params")
        if method == "notifications/initialized":
            session.initialized = True
        elif method == "notifications/cancelled" and isinstance(params, dict):
            request_id = params.get("requestId")
            if type(request_id) in (str, int):  # anything else names no call (nor hashes)
                self.gateway.cancel(session, request_id)

    def _modern(
        self,
        endpoint: Endpoint,
        headers: RequestHeaders,
        message: Message,
        raw_headers: list[tuple[bytes, bytes]],
    ) -> ClientSession | Answer:
        """The (per-request) session a 2026-07-28 request is served in, or its answer now."""
        method = message.get("method")
        if "id" not in message or not isinstance(method, str):
            # No client-to-server notifications or responses exist on this wire.
            if "method" in message:
                return ACCEPTED
            raise Reject(400, INVALID_REQUEST, "2026-07-28 clients send no responses")
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        rejection = self._ladder(endpoint, headers, raw_headers, method, params, meta)
        if rejection is not None:
            code, text, data = rejection
            return Answer(
                MODERN_ERROR_STATUS.get(code, 200), error(message.get("id"), code, text, data)
            )
        assert isinstance(meta, dict)
        return self.gateway.sessions.modern(endpoint, meta[PROTOCOL_VERSION_META_KEY], meta)

    def _ladder(
        self,
        endpoint: Endpoint,
        headers: RequestHeaders,
        raw_headers: list[tuple[bytes, bytes]],
        method: str,
        params: Any,
        meta: Any,
    ) -> tuple[int, str, Any] | None:
        """The 2026-07-28 checks of a request, in the SDK's order; the first failure as
        (code, message, data), or None when the request may be served."""
        if (
            not isinstance(meta, dict)
            or PROTOCOL_VERSION_META_KEY not in meta
            or CLIENT_CAPABILITIES_META_KEY not in meta
        ):
            return (
                INVALID_PARAMS,
                "params._meta must carry the protocol version and client capabilities",
                None,
            )
        version = meta[PROTOCOL_VERSION_META_KEY]
        duplicate = headers.duplicate
        if duplicate is not None:
            return (
                HEADER_MISMATCH,
                f"{duplicate.decode('latin-1')} header appears more than once",
                None,
            )
        if (headers.protocol_version or b"").decode("latin-1") != version:
            text = "MCP-Protocol-Version header does not match the request envelope"
            return HEADER_MISMATCH, text, None
        if (headers.mcp_method or b"").decode("latin-1") != method:
            return (
                HEADER_MISMATCH,
                "Mcp-Method header does not match the request body's method",
                None,
            )
        name_key = NAME_BEARING_METHODS.get(method)
        if name_key is not None:
            value = params.get(name_key) if isinstance(params, dict) else None
            header = headers.mcp_name
            if value is not None and (header is None or decode_header(header) != value):
                text = f"Mcp-Name header does not match the request body's {name_key!r}"
                return HEADER_MISMATCH, text, None
        if not isinstance(version, str):
            return INVALID_PARAMS, "the protocol version must be a string", None
        if version not in MODERN_VERSIONS:
            data = {"supported": list(MODERN_VERSIONS), "requested": version}
            return UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version", data
        if method == "tools/call" and isinstance(params, dict):
            problem = self.gateway.check_param_headers(endpoint, params, raw_headers)
            if problem is not None:
                return HEADER_MISMATCH, problem, None
        return None

    # --- GET and DELETE -----------------------------------------------------------------------

    async def _get(
        self, endpoint: Endpoint, headers: RequestHeaders, receive: Receive, send: Send
    ) -> None:
        version = headers.protocol_version
        if version is not None and version.decode("latin-1") not in HANDSHAKE_VERSIONS:
            raise Reject(
                405,
                INVALID_REQUEST,
                "2026-07-28 has no GET stream; use subscriptions/listen",
                headers=[(b"allow", b"POST")],
            )
        accept = headers.accept or b""
        if not (b"text/event-stream" in accept or b"text/*" in accept or b"*/*" in accept):
            raise Reject(406, INVALID_REQUEST, "Accept must list text/event-stream")
        session = self._session(endpoint, headers)
        if session.streaming:
            raise Reject(409, INVALID_REQUEST, "this session already has a GET stream")
        session.streaming = True
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        disconnect = asyncio.ensure_future(wait_disconnect(receive))
        try:
            while (
                not disconnect.done() and self.gateway.sessions.get(session.id, endpoint) is session
            ):
                getter = asyncio.ensure_future(session.outbox.get())
                done, _ = await asyncio.wait(
                    (getter, disconnect),
                    timeout=KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    await event(send, getter.result())
                    continue
                getter.cancel()
                if not done:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": keepalive\n\n",
                            "more_body": True,
                        }
                    )
        finally:
            session.streaming = False
            if not disconnect.done():
                disconnect.cancel()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _delete(self, endpoint: Endpoint, headers: RequestHeaders, send: Send) -> None:
        version = headers.protocol_version
        if version is not None and version.decode("latin-1") not in HANDSHAKE_VERSIONS:
            raise Reject(
                405,
                INVALID_REQUEST,
                "2026-07-28 has no sessions to end",
                headers=[(b"allow", b"POST")],
            )
        session = self._session(endpoint, headers)
        self.gateway.sessions.close(session.id)
        await reply(send, 200, None)

    def _session(self, endpoint: Endpoint, headers: RequestHeaders) -> ClientSession:
        session_id = headers.session_id
        if session_id is None:
            raise Reject(400, INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id")
        session = self.gateway.sessions.get(session_id.decode("latin-1"), endpoint)
        if session is None:
            raise Reject(404, -32001, "Session not found")
        return session
