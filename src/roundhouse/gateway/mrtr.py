"""Multi round-trip requests between the eras (2026-07-28 ``input_required``).

A legacy upstream asks its client for sampling, elicitation or roots with a server-to-client
request in the middle of a call. A 2026-07-28 client cannot receive requests: it expects the call
to *answer* ``{"resultType": "input_required", "inputRequests": {...}, "requestState": ...}`` and
then re-sends the original request with ``inputResponses`` and the ``requestState``.

The bridge holds the upstream call open across those round trips: when the upstream asks, the
client's call returns ``input_required`` with a gateway token as ``requestState`` and the
upstream call is *parked*; the retry carrying that token answers the upstream's requests and
waits on the very same upstream call. A parked call not resumed in time is cancelled.

The other direction needs no bridge: a modern upstream's own ``input_required`` passes through
untouched, and its retry is sent to the same instance (``state_owner``).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roundhouse.gateway.sessions import Call
from roundhouse.protocol.jsonrpc import Message
from roundhouse.upstream.base import Connection

__all__ = ["TOKEN_PREFIX", "InputBridge", "Parked"]

#: Gateway tokens start with this; any other ``requestState`` is the upstream's own.
TOKEN_PREFIX = "rh-mrtr:"  # noqa: S105 - a marker, not a secret
#: Seconds a parked upstream call waits for the client's retry before it is cancelled.
PARK_SECONDS = 300.0
#: After the first server-to-client request, how long to wait for more before answering
#: ``input_required`` (a server may ask several things at once).
GATHER_SECONDS = 0.01


@dataclass(eq=False)
class Parked:
    token: str
    upstream: asyncio.Task[Message]
    instance: str
    #: key -> (connection, upstream request id) awaiting the client's answer
    waiting: dict[str, tuple[Connection, Any]]
    deadline: float = field(default_factory=lambda: time.monotonic() + PARK_SECONDS)


class InputBridge:
    def __init__(self) -> None:
        self._parked: dict[str, Parked] = {}
        self._keys = itertools.count(1)
        #: an upstream's own requestState -> the instance that issued it
        self.state_owner: dict[str, str] = {}

    def take(self, token: Any) -> Parked | None:
        self._expire()
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            return None
        return self._parked.pop(token, None)

    def ask(self, call: Call, connection: Connection, message: Message) -> bool:
        """The relay's hook: an upstream request for a call of a 2026-07-28 client. Records it
        for the ``input_required`` answer; False if that call cannot take input."""
        if call.input_needed is None:
            return False
        key = f"input-{next(self._keys)}"
        call.input_requests[key] = (connection, message["id"], message)
        if not call.input_needed.done():
            call.input_needed.set_result(None)
        return True

    async def wait(
        self, call: Call, upstream: asyncio.Task[Message], instance: str
    ) -> Message | dict[str, Any]:
        """The upstream's response, or (as a result dict) ``input_required`` once it asks."""
        loop = asyncio.get_running_loop()
        call.input_needed = needed = loop.create_future()
        try:
            await asyncio.wait((upstream, needed), return_when=asyncio.FIRST_COMPLETED)
            if upstream.done():
                return upstream.result()
            await asyncio.sleep(GATHER_SECONDS)
            if upstream.done() and not call.input_requests:
                return upstream.result()
        finally:
            call.input_needed = None
        token = TOKEN_PREFIX + secrets.token_urlsafe(18)
        requests = call.input_requests
        call.input_requests = {}
        self._parked[token] = Parked(
            token, upstream, instance, {k: (c, i) for k, (c, i, _) in requests.items()}
        )
        return {
            "resultType": "input_required",
            "inputRequests": {
                key: {"method": m["method"], "params": m.get("params", {})}
                for key, (_, _, m) in requests.items()
            },
            "requestState": token,
        }

    def resume(
        self, parked: Parked, responses: Any, answer: Callable[[Connection, Message], None]
    ) -> str | None:
        """Give the upstream the client's answers; an error message if some are missing."""
        if not isinstance(responses, dict):
            responses = {}
        missing = [key for key in parked.waiting if key not in responses]
        if missing:
            self._parked[parked.token] = parked  # still parked: the client may try again
            return f"inputResponses lacks {', '.join(sorted(missing))}"
        for key, (connection, upstream_id) in parked.waiting.items():
            result = responses[key]
            if not isinstance(result, dict):
                result = {}
            answer(connection, {"jsonrpc": "2.0", "id": upstream_id, "result": result})
        return None

    def _expire(self) -> None:
        now = time.monotonic()
        for token, parked in list(self._parked.items()):
            if parked.deadline < now:
                del self._parked[token]
                parked.upstream.cancel()

    def close(self) -> None:
        for parked in self._parked.values():
            parked.upstream.cancel()
        self._parked.clear()
