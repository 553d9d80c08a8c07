"""One POSTed request served inline: the answer is JSON, unless the call streams.

The call runs in the request's own coroutine (no task of its own): on the hot path that saves
a task and two trips through the event loop per request. If the upstream sends something about
the call before answering (progress, a log line, a server-to-client request), ``Call.deliver``
starts a stream task that sends the SSE headers and every message as it comes; the answer then
ends that stream. After ``DISCONNECT_WATCH_AFTER`` seconds a watcher starts reading the
request's ``receive``: a client that goes away cancels its call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Send

from roundhouse.gateway.frontends.wire import SSE_HEADERS, event, wait_disconnect
from roundhouse.gateway.sessions import Call
from roundhouse.protocol.jsonrpc import Message

__all__ = ["DISCONNECT_WATCH_AFTER", "Exchange"]

#: A call that takes longer than this starts watching for its client to go away.
DISCONNECT_WATCH_AFTER = 1.0


class Exchange:
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
