"""One POSTed request served inline: the answer is JSON, unless the call streams.

The call runs in the request's own coroutine (no task of its own): on the hot path that saves
a task and two trips through the event loop per request. If the upstream sends something about
the call before answering (progress, a log line, a server-to-client request), ``Call.deliver``
starts a stream task that sends the SSE headers and every message as it comes; the answer then
ends that stream. A call still in flight after ``DISCONNECT_WATCH_AFTER`` seconds starts a
watcher reading the request's ``receive``: a client that goes away cancels its call.

That delay is kept by one :class:`DisconnectWatch` for all calls, not a timer per call: every
half-period it starts the watchers of the calls that were already in flight at the previous
tick, so a call is watched after between half and the whole of ``DISCONNECT_WATCH_AFTER``.
On the hot path a call costs a set insertion and removal.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Send

from roundhouse.gateway.frontends.wire import SSE_HEADERS, event, wait_disconnect
from roundhouse.gateway.sessions import Call
from roundhouse.protocol.jsonrpc import Message

__all__ = ["DISCONNECT_WATCH_AFTER", "DisconnectWatch", "Exchange"]

#: A call that takes longer than this starts watching for its client to go away.
DISCONNECT_WATCH_AFTER = 1.0


class DisconnectWatch:
    """Starts the disconnect watchers of calls that have been in flight for a while."""

    def __init__(self, after: float = DISCONNECT_WATCH_AFTER) -> None:
        self._period = after / 2
        self._young: set[Exchange] = set()  # started since the last tick
        self._old: set[Exchange] = set()  # in flight at the last tick
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, exchange: Exchange, loop: asyncio.AbstractEventLoop) -> None:
        """Watch ``exchange``, a call running on ``loop`` (the running loop)."""
        self._young.add(exchange)
        if self._timer is None or self._loop is not loop:
            # (A timer left on another loop, e.g. an app served again by a new loop, is dead.)
            self._loop = loop
            self._timer = loop.call_later(self._period, self._tick)

    def discard(self, exchange: Exchange) -> None:
        self._young.discard(exchange)
        self._old.discard(exchange)

    def _tick(self) -> None:
        due, self._old, self._young = self._old, self._young, set()
        for exchange in due:
            exchange.watch_disconnect()
        self._timer = (
            asyncio.get_running_loop().call_later(self._period, self._tick) if self._old else None
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._young.clear()
        self._old.clear()


class Exchange:
    __slots__ = ("_final", "_receive", "_send", "_stream", "_watcher", "call", "client_gone")

    def __init__(self, call: Call, send: Send, receive: Receive) -> None:
        self.call = call
        self._send = send
        self._receive = receive
        self._stream: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[Any] | None = None
        self._final: Message | None = None
        #: The client went away (the call was cancelled for it): nothing more to send.
        self.client_gone = False

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def start_stream(self) -> None:
        """``Call.deliver``'s hook: the first message about the call turns it into SSE."""
        if self._stream is None:
            self._stream = asyncio.get_running_loop().create_task(self._run_stream())

    def watch_disconnect(self) -> None:
        if self._watcher is None and not self.client_gone:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await wait_disconnect(self._receive)
        self.client_gone = True
        task = self.call.task
        if task is not None and not task.done():
            task.cancel()
        if self._stream is not None:
            self._stream.cancel()

    async def _run_stream(self) -> None:
        call = self.call
        loop = asyncio.get_running_loop()
        await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        while True:
            while call.outbox:
                await event(self._send, call.outbox.pop(0))
            if self._final is not None:
                break
            call.related = loop.create_future()
            await call.related
        await event(self._send, self._final)
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def finish_stream(self, response: Message) -> None:
        """End the SSE stream with the call's answer."""
        assert self._stream is not None
        self._final = response
        related = self.call.related
        if related is not None and not related.done():
            related.set_result(None)
        await self._stream

    def close(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
        if self._stream is not None and not self._stream.done():
            self._stream.cancel()
