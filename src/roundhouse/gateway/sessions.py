"""Client sessions of the legacy era (2025-03-26 … 2025-11-25) and the calls in flight.

A legacy client's ``initialize`` opens a :class:`ClientSession` with a cryptographically random
id; the session is bound to the endpoint that opened it (``/mcp`` or one server's). Modern
(2026-07-28) clients have no session: each of their requests carries its own envelope, and the
gateway treats it as a one-request session that is never stored.

A :class:`Call` is one client request being served. It is where messages the upstream sends
*about* that request (progress, log messages, server-to-client requests) are delivered: the
frontend drains :attr:`Call.outbox` into the response stream.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from roundhouse.protocol.jsonrpc import Message

__all__ = ["Call", "ClientSession", "Scope", "SessionTable"]

_CALL_IDS: Final = itertools.count(1)
#: Messages queued for a session's GET stream before the oldest are dropped.
OUTBOX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Scope:
    """Which endpoint a request came through: the aggregate ``/mcp`` or one server's."""

    slug: str | None = None

    @property
    def aggregate(self) -> bool:
        return self.slug is None


@dataclass(eq=False, slots=True)
class ClientSession:
    id: str
    scope: Scope
    era: str
    protocol_version: str
    client_info: dict[str, Any]
    capabilities: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    initialized: bool = False
    log_level: str | None = None
    #: Unsolicited messages for the GET stream (list_changed, resources/updated…).
    outbox: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(OUTBOX_LIMIT))
    streaming: bool = False
    subscriptions: set[str] = field(default_factory=set)
    calls: dict[Any, Call] = field(default_factory=dict)
    #: The instance each server's calls go to: upstream state (subscriptions, tasks) lives in
    #: one process, so a legacy session sticks to it while it is ready.
    sticky: dict[str, str] = field(default_factory=dict)

    def can(self, capability: str) -> bool:
        """Did the client declare this capability (``sampling``, ``elicitation``, ``roots``)?"""
        return capability in self.capabilities

    def push(self, message: Message) -> None:
        """Queue an unsolicited message; a full queue drops its oldest, never blocks."""
        if self.outbox.full():
            self.outbox.get_nowait()
        self.outbox.put_nowait(message)


class Call:
    """One client request in flight through the gateway.

    A plain class, not a dataclass: one is made for every request, and compiled (mypyc) a
    dataclass keeps the ``__init__`` the dataclasses module writes, in Python.
    """

    __slots__ = (
        "cancelled_by_client",
        "client_id",
        "input_needed",
        "input_requests",
        "instance",
        "method",
        "on_first_related",
        "outbox",
        "progress_token",
        "related",
        "session",
        "sink",
        "slug",
        "task",
        "upstream_id",
    )

    def __init__(
        self,
        session: ClientSession,
        client_id: Any,
        method: str,
        *,
        sink: Callable[[Message], None] | None = None,
    ) -> None:
        self.session = session
        self.client_id = client_id
        self.method = method
        self.slug: str | None = None
        self.instance: str | None = None
        self.progress_token: Any = None
        #: Messages about this call (progress, logs, server-to-client requests) for its
        #: stream; ``related`` is resolved when the first one arrives, so the frontend can
        #: switch to SSE.
        self.outbox: list[Message] = []
        self.related: asyncio.Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None
        #: Set while a 2026-07-28 client's call waits on a legacy upstream: a server-to-client
        #: request then becomes part of an ``input_required`` answer (``gateway/mrtr.py``).
        self.input_needed: asyncio.Future[None] | None = None
        self.input_requests: dict[str, tuple[Any, Any, Message]] = {}
        #: The id this call carries upstream: unique in the gateway, unlike the client's own.
        # Concatenated, not an f-string: compiled, an f-string over a value of this type
        # becomes a call of str.format (~2,000 instructions a call).
        self.upstream_id = "rh-" + str(next(_CALL_IDS))
        #: Called once, at the first message about the call (the HTTP frontend starts its SSE
        #: stream from it).
        self.on_first_related: Callable[[], None] | None = None
        #: The client asked to cancel (``notifications/cancelled``), as opposed to going away.
        self.cancelled_by_client = False
        #: Where related messages go straight out instead of the outbox (the stdio frontend:
        #: it has no stream per call).
        self.sink = sink

    def deliver(self, message: Message) -> None:
        sink = self.sink
        if sink is not None:
            sink(message)
            return
        self.outbox.append(message)
        hook = self.on_first_related
        if hook is not None:
            self.on_first_related = None
            hook()
        if self.related is not None and not self.related.done():
            self.related.set_result(None)


class SessionTable:
    """Live sessions by id, least recently used first; bounded in count and idle time."""

    def __init__(self, *, max_sessions: int = 10_000, idle_timeout: float = 3600.0) -> None:
        self._sessions: OrderedDict[str, ClientSession] = OrderedDict()
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._progress = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    def open(
        self,
        scope: Scope,
        *,
        protocol_version: str,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
    ) -> ClientSession:
        self.expire()
        while len(self._sessions) >= self.max_sessions:
            _, oldest = self._sessions.popitem(last=False)
            _close(oldest)
        session = ClientSession(
            id=secrets.token_urlsafe(24),
            scope=scope,
            era="legacy",
            protocol_version=protocol_version,
            client_info=client_info,
            capabilities=capabilities,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, scope: Scope) -> ClientSession | None:
        """The live session with this id opened on this endpoint, or None."""
        session = self._sessions.get(session_id)
        # (Scope holds one field: its slug compared directly saves the dataclass __eq__.)
        if session is None or session.scope.slug != scope.slug:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_timeout:
            self.close(session_id)
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def close(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        _close(session)
        return True

    def expire(self) -> None:
        deadline = time.monotonic() - self.idle_timeout
        while self._sessions:
            session = next(iter(self._sessions.values()))
            if session.last_seen >= deadline:
                break
            self.close(session.id)

    def all(self) -> list[ClientSession]:
        return list(self._sessions.values())

    def modern(self, scope: Scope, protocol_version: str, meta: dict[str, Any]) -> ClientSession:
        """A throwaway session for one 2026-07-28 request (never stored)."""
        info = meta.get("io.modelcontextprotocol/clientInfo")
        caps = meta.get("io.modelcontextprotocol/clientCapabilities")
        return ClientSession(
            id="",
            scope=scope,
            era="modern",
            protocol_version=protocol_version,
            client_info=info if isinstance(info, dict) else {},
            capabilities=caps if isinstance(caps, dict) else {},
            initialized=True,
        )

    def next_progress_token(self) -> str:
        return f"rh-{next(self._progress)}"


def _close(session: ClientSession) -> None:
    for call in session.calls.values():
        if call.task is not None and not call.task.done():
            call.task.cancel()
    session.calls.clear()
