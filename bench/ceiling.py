"""The ceiling: the barest Python pipe proxy, on the gateway's server stack.

    python bench/ceiling.py --upstream raw|sdk [--port P] [--loop asyncio|uvloop]
                            [--http auto|h11|httptools] [--pipe-size BYTES]

HTTP in (uvicorn, a bare ASGI callable), one shared stdio upstream out. A ``POST /mcp`` (or
``/servers/{slug}/mcp``) body is parsed with orjson, its id swapped for our counter, the line
written to the upstream's stdin; the reader callback finds the pending future by id, puts the
client's id back, and the handler answers with the JSON body. Nothing else: no sessions, no
headers checked, no validation, no policies, no backpressure beyond the pipe's. The upstream is
met once at start with the gateway's own ``handshake()`` (``initialize`` for the raw server,
``server/discover`` for the SDK one); requests to a modern upstream get its ``_meta`` stamped,
as the gateway must do for a legacy client.

Once listening it prints one JSON line on stdout (port, loop, HTTP protocol class, upstream era
and pid) for ``run.py``. Defaults match ``roundhouse up``: ``asyncio.run`` (the stdlib loop) and
uvicorn's ``http="auto"`` (httptools when installed, else h11).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import itertools
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, cast

import orjson
import uvicorn
from scenarios import UPSTREAMS

from roundhouse.protocol.eras import Handshake
from roundhouse.upstream.handshake import handshake
from roundhouse.upstream.stdio import StdioConnection

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HANDSHAKE_TIMEOUT: Final = 30.0
F_SETPIPE_SZ: Final = 1031  # Linux; not in Python 3.11's fcntl
JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class PipeUpstream(asyncio.SubprocessProtocol):
    """One stdio child; answers are matched to pending futures straight from the pipe callback.

    Until ``detach_handshake()`` the bytes go to a StreamReader that a StdioConnection reads, so
    the gateway's own handshake code can meet the server.
    """

    def __init__(self) -> None:
        self.pending: dict[int, tuple[asyncio.Future[dict[str, Any]], Any]] = {}
        self.handshake_feed: asyncio.StreamReader | None = asyncio.StreamReader(limit=1 << 24)
        self.stdin: asyncio.WriteTransport | None = None
        self.partial = bytearray()
        self.exited = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's: no isinstance checks here.
        stdin = cast(asyncio.SubprocessTransport, transport).get_pipe_transport(0)
        self.stdin = cast(asyncio.WriteTransport, stdin)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.handshake_feed is not None:
            self.handshake_feed.feed_data(data)
            return
        start = 0
        if self.partial:
            newline = data.find(b"\n")
            if newline < 0:
                self.partial += data
                return
            self.partial += data[:newline]
            self.answer(self.partial)
            self.partial = bytearray()
            start = newline + 1
        find = data.find
        while (newline := find(b"\n", start)) >= 0:
            self.answer(data[start:newline])
            start = newline + 1
        if start < len(data):
            self.partial += data[start:]

    def answer(self, line: bytes | bytearray) -> None:
        try:
            message = orjson.loads(line)
            entry = self.pending.pop(message.get("id"), None)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return  # chatter on stdout: dropped, never fatal to the pipe
        if entry is None:
            return  # a notification, or a server-to-client request nobody here answers
        future, client_id = entry
        message["id"] = client_id
        if not future.done():
            future.set_result(message)

    def process_exited(self) -> None:
        self.exited = True
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the upstream exited"))
        self.pending.clear()

    def detach_handshake(self) -> None:
        self.handshake_feed = None


class _HandshakeWriter:
    """The StdioConnection side of the handshake: writes go straight to the child's stdin."""

    def __init__(self, upstream: PipeUpstream) -> None:
        self._upstream = upstream

    def write(self, data: bytes) -> None:
        assert self._upstream.stdin is not None
        self._upstream.stdin.write(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None  # the proxy keeps the pipe

    def is_closing(self) -> bool:
        return self._upstream.exited


async def start_upstream(
    command: list[str], pipe_size: int = 0
) -> tuple[PipeUpstream, Handshake, int]:
    loop = asyncio.get_running_loop()
    transport, upstream = await loop.subprocess_exec(
        PipeUpstream, *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    if pipe_size:
        for fd in (0, 1):
            pipe = transport.get_pipe_transport(fd)
            if pipe is not None:
                fcntl.fcntl(pipe.get_extra_info("pipe").fileno(), F_SETPIPE_SZ, pipe_size)
    assert upstream.handshake_feed is not None
    conn = StdioConnection(upstream.handshake_feed, _HandshakeWriter(upstream), name="ceiling")
    reader = asyncio.create_task(conn.run())
    try:
        shaken = await handshake(conn, timeout=HANDSHAKE_TIMEOUT)
    finally:
        # Nothing is in flight now: stop the handshake reader and take the pipe over.
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        upstream.detach_handshake()
    return upstream, shaken, transport.get_pid()


def make_app(upstream: PipeUpstream, shaken: Handshake) -> Callable[..., Awaitable[None]]:
    ids = itertools.count(1)
    pending = upstream.pending
    stamp = shaken.stamp if shaken.era == "modern" else None
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE

    async def reply(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if scope["method"] != "POST" or not (
            path == "/mcp" or (path.startswith("/servers/") and path.endswith("/mcp"))
        ):
            await reply(send, 404, b'{"detail":"Not Found"}')
            return
        event = await receive()
        body: bytes = event.get("body", b"")
        while event.get("more_body", False):
            event = await receive()
            body += event.get("body", b"")
        message = orjson.loads(body)
        assert upstream.stdin is not None
        if "id" not in message:
            upstream.stdin.write(dumps(message, option=newline))
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        ours = next(ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending[ours] = (future, message["id"])
        message["id"] = ours
        if stamp is not None:
            message["params"] = stamp(message.get("params"))
        upstream.stdin.write(dumps(message, option=newline))
        try:
            answer = await future
        except ConnectionError:
            await reply(send, 502, b'{"detail":"the upstream exited"}')
            return
        finally:
            pending.pop(ours, None)
        await reply(send, 200, dumps(answer))

    return app


async def serve(args: argparse.Namespace) -> None:
    command = UPSTREAMS[args.upstream].command()
    upstream, shaken, upstream_pid = await start_upstream(command, args.pipe_size)
    # As in roundhouse.api.serve: IPPROTO_TCP spelled out so asyncio turns Nagle off.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        make_app(upstream, shaken),
        http=args.http,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)
    config.load()
    ready = {
        "port": sock.getsockname()[1],
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "http": config.http_protocol_class.__name__,
        "upstream": args.upstream,
        "era": shaken.era,
        "protocol_version": shaken.protocol_version,
        "upstream_pid": upstream_pid,
        "pipe_size": args.pipe_size or "default",
    }

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.005)
        print(orjson.dumps(ready).decode(), flush=True)

    announcer = asyncio.create_task(announce())
    await server.serve(sockets=[sock])
    announcer.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", choices=sorted(UPSTREAMS), default="raw")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto")
    parser.add_argument(
        "--pipe-size", type=int, default=0, help="F_SETPIPE_SZ for the upstream's pipes [kernel's]"
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
