"""Hostile and broken MCP requests over a real socket: each gets the spec's error, nothing else.

Raw httpx against ``/mcp`` and ``/servers/raw/mcp`` (a raw stdio fixture behind it), in both
protocol eras. Every case checks the HTTP status *and* the JSON-RPC code, and every test ends
by proving that nothing else was disturbed: a session opened before it still calls a tool on
each endpoint, a 2026-07-28 request still succeeds, the upstream process was not restarted, and
the gateway never answered 5xx.

Where the answer differs from the official SDK's server (``mcp`` 2.3.0) it is said next to the
case; the differences are deliberate (or the SDK's own open TODOs), not accidents.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from roundhouse.gateway.sessions import Scope
from roundhouse.manager import AsyncManager

from .conftest import eventually, stdio_spec, wait_state
from .served import serve

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
#: The per-module body cap: small enough to exceed cheaply, large enough for a 5,000-deep body.
BODY_CAP = 64 * 1024

AGGREGATE = "/mcp"
ONE = "/servers/raw/mcp"
PATHS = [AGGREGATE, ONE]
ERAS = ["legacy", "modern"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001
HEADER_MISMATCH = -32020
UNSUPPORTED_VERSION = -32022


def echo_name(path: str) -> str:
    return "raw__echo" if path == AGGREGATE else "echo"


def modern_meta() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "errors-test", "version": "1"},
    }


def modern_body(request_id: Any, method: str, params: dict[str, Any] | None = None) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": method,
            "params": {**(params or {}), "_meta": modern_meta()},
        }
    ).encode()


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def call_body(request_id: Any, path: str, text: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": echo_name(path), "arguments": {"text": text}},
    }


@dataclass
class Gateway:
    manager: AsyncManager
    client: httpx.AsyncClient
    port: int
    #: Every 5xx answer; the ``gateway`` fixture fails the test that got one.
    server_errors: list[str]
    #: One legacy session per endpoint, opened before any test: the bystanders.
    bystanders: dict[str, str]
    #: The upstream's pid at the start: a restart would be a disturbance.
    raw_pid: int

    async def post(
        self,
        path: str,
        body: bytes | dict[str, Any] | list[Any],
        headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        drop: Iterable[str] = (),
    ) -> httpx.Response:
        """POST raw bytes (or JSON) with the usual Accept and Content-Type, minus ``drop``."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        pairs = _pairs(headers)
        given = {name.lower() for name, _ in pairs}
        defaults = [("Accept", ACCEPT), ("Content-Type", "application/json")]
        merged = [(k, v) for k, v in defaults if k.lower() not in given] + pairs
        request = self.client.build_request("POST", path, content=content, headers=merged)
        for name in drop:
            del request.headers[name]
        return await self.client.send(request)

    async def open_session(self, path: str) -> str:
        response = await self.post(
            path,
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": {"name": "errors-test", "version": "1"},
                },
            },
        )
        assert response.status_code == 200, response.text
        session_id = response.headers["mcp-session-id"]
        initialized = await self.post(
            path,
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            self.session_headers(session_id),
        )
        assert initialized.status_code == 202
        return session_id

    @staticmethod
    def session_headers(session_id: str) -> dict[str, str]:
        return {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY}

    async def era_headers(self, era: str, path: str, method: str) -> dict[str, str]:
        """Headers that put a request on ``era``'s path: a live session, or the modern header."""
        if era == "legacy":
            return self.session_headers(await self.open_session(path))
        return modern_headers(method)

    async def legacy_call_works(self, path: str, session_id: str, text: str) -> None:
        response = await self.post(
            path, call_body(91, path, text), self.session_headers(session_id)
        )
        assert response.status_code == 200, response.text
        assert _json(response) == {
            "jsonrpc": "2.0",
            "id": 91,
            "result": {"content": [{"type": "text", "text": text}], "isError": False},
        }

    async def modern_call_works(self, path: str, text: str) -> None:
        name = echo_name(path)
        body = modern_body(92, "tools/call", {"name": name, "arguments": {"text": text}})
        response = await self.post(path, body, modern_headers("tools/call", name))
        assert response.status_code == 200, response.text
        answer = _json(response)
        assert answer["id"] == 92
        assert answer["result"]["content"] == [{"type": "text", "text": text}]


def _pairs(
    headers: dict[str, str] | Iterable[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a response (JSON or a one-message SSE stream), read with the
    stdlib so integers of any size come back exactly."""
    assert response.headers.get("content-type", "").startswith(
        ("application/json", "text/event-stream")
    ), response.headers
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message: dict[str, Any] = json.loads(data[-1])
        return message
    message = json.loads(response.content)
    return message


def assert_error(response: httpx.Response, status: int, code: int, request_id: Any = None) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    answer = _json(response)
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert answer["id"] == request_id, answer
    assert "result" not in answer


# One gateway for the module (starting a manager, an upstream and uvicorn costs ~0.5 s).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    async with serve(tmp_path_factory.mktemp("mcp-errors"), max_mcp_body_bytes=BODY_CAP) as gw:
        manager, port = gw.manager, gw.port
        await manager.create_server(stdio_spec("raw", "raw_server.py"))
        await wait_state(manager, "raw", "running")
        await eventually(
            lambda: any(t["name"] == "raw__echo" for t in manager.gateway.catalog.tools()),
            what="raw's tools in the catalog",
        )
        server_errors: list[str] = []

        async def remember(response: httpx.Response) -> None:
            if response.status_code >= 500:
                request = response.request
                server_errors.append(f"{request.method} {request.url} → {response.status_code}")

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            trust_env=False,
            timeout=10,
            event_hooks={"response": [remember]},
        ) as client:
            gateway = Gateway(manager, client, port, server_errors, {}, 0)
            for path in PATHS:
                gateway.bystanders[path] = await gateway.open_session(path)
            pid = manager.supervisor.workers("raw")[0].record.pid
            assert pid is not None
            gateway.raw_pid = pid
            yield gateway


@pytest_asyncio.fixture(loop_scope="module")
async def gateway(served: Gateway) -> AsyncIterator[Gateway]:
    served.server_errors.clear()
    yield served
    # Nothing else is disturbed: the sessions opened before the test, a modern call, the
    # upstream process, and no 5xx anywhere.
    for path in PATHS:
        await served.legacy_call_works(path, served.bystanders[path], f"still here on {path}")
        await served.modern_call_works(path, f"modern still here on {path}")
    worker = served.manager.supervisor.workers("raw")[0]
    assert worker.record.pid == served.raw_pid, "the upstream was restarted"
    assert worker.record.state.value == "running"
    assert not served.server_errors, f"the gateway answered 5xx: {served.server_errors}"


# --- bodies that are not one JSON-RPC message, in both eras ----------------------------------

NOT_A_MESSAGE = [
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "method": ', PARSE_ERROR, id="malformed-json"),
    pytest.param(b"", PARSE_ERROR, id="empty-body"),
    pytest.param(b"   \n", PARSE_ERROR, id="blank-body"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"ping"} x', PARSE_ERROR, id="trailing-data"),
    pytest.param(b'\xff\xfe{"jsonrpc":"2.0"}', PARSE_ERROR, id="not-utf8"),
    pytest.param(b"[" * 5000 + b"]" * 5000, PARSE_ERROR, id="5000-deep-array"),
    pytest.param(b'{"a":' * 5000 + b"1" + b"}" * 5000, PARSE_ERROR, id="5000-deep-object"),
    # SDK legacy transport: 400 with -32602 ("Validation error") for every shape error below;
    # JSON-RPC 2.0 names them Invalid Request (-32600), as the SDK's modern path does.
    pytest.param(b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST, id="batch"),
    pytest.param(b"[]", INVALID_REQUEST, id="empty-batch"),
    pytest.param(b'"tools/list"', INVALID_REQUEST, id="a-string"),
    pytest.param(b"42", INVALID_REQUEST, id="a-number"),
    pytest.param(b"null", INVALID_REQUEST, id="null"),
    pytest.param(b'{"id":1,"method":"tools/list"}', INVALID_REQUEST, id="jsonrpc-missing"),
    pytest.param(b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}', INVALID_REQUEST, id="v1.0"),
    pytest.param(b'{"jsonrpc":2.0,"id":1,"method":"tools/list"}', INVALID_REQUEST, id="v-number"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":5}', INVALID_REQUEST, id="method-number"),
    pytest.param(b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST, id="no-method-no-result"),
    pytest.param(
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', INVALID_REQUEST, id="id-object"
    ),
    pytest.param(b'{"jsonrpc":"2.0","id":[1],"method":"ping"}', INVALID_REQUEST, id="id-array"),
    pytest.param(b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, id="id-bool"),
    pytest.param(b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, id="id-null"),
    pytest.param(b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, id="id-float"),
    # Beyond 64 bits orjson reads a float, which could not be echoed exactly: refused. (The SDK
    # parses arbitrary integers and echoes this one.)
    pytest.param(
        b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}',
        INVALID_REQUEST,
        id="id-beyond-64-bits",
    ),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("body", "code"), NOT_A_MESSAGE)
async def test_a_body_that_is_not_one_json_rpc_message_is_refused_with_400(
    gateway: Gateway, era: str, path: str, body: bytes, code: int
) -> None:
    headers = await gateway.era_headers(era, path, "tools/list")
    response = await gateway.post(path, body, headers)
    assert_error(response, 400, code)
    if era == "legacy":
        # The session the bad body came on is not harmed either.
        await gateway.legacy_call_works(path, headers["Mcp-Session-Id"], "after a bad body")


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
async def test_an_unknown_method_is_method_not_found(gateway: Gateway, era: str, path: str) -> None:
    if era == "legacy":
        # Legacy: an ordinary JSON-RPC error on 200, as the SDK's server answers it.
        headers = await gateway.era_headers(era, path, "")
        body = {"jsonrpc": "2.0", "id": 5, "method": "no/such/method", "params": {}}
        assert_error(await gateway.post(path, body, headers), 200, METHOD_NOT_FOUND, 5)
    else:
        # 2026-07-28: 404 with -32601 (the SDK's ERROR_CODE_HTTP_STATUS).
        response = await gateway.post(
            path, modern_body(5, "no/such/method"), modern_headers("no/such/method")
        )
        assert_error(response, 404, METHOD_NOT_FOUND, 5)


@pytest.mark.parametrize("path", PATHS)
async def test_ping_is_not_a_2026_method(gateway: Gateway, path: str) -> None:
    response = await gateway.post(path, modern_body(6, "ping"), modern_headers("ping"))
    assert_error(response, 404, METHOD_NOT_FOUND, 6)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
async def test_an_unknown_tool_is_invalid_params(gateway: Gateway, era: str, path: str) -> None:
    name = "nope__echo" if path == AGGREGATE else "nope"
    if era == "legacy":
        headers = await gateway.era_headers(era, path, "")
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name}}
        assert_error(await gateway.post(path, body, headers), 200, INVALID_PARAMS, 7)
    else:
        body_bytes = modern_body(7, "tools/call", {"name": name, "arguments": {}})
        response = await gateway.post(path, body_bytes, modern_headers("tools/call", name))
        assert_error(response, 400, INVALID_PARAMS, 7)


@pytest.mark.parametrize("params", [[1, 2], "x", 3])
@pytest.mark.parametrize("path", PATHS)
async def test_params_that_are_not_an_object_are_invalid_params(
    gateway: Gateway, path: str, params: Any
) -> None:
    # Legacy: -32602 on 200 (the SDK refuses the body at the transport: 400, -32602).
    headers = await gateway.era_headers("legacy", path, "")
    body = {"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": params}
    assert_error(await gateway.post(path, body, headers), 200, INVALID_PARAMS, 8)
    # 2026-07-28: params without an envelope fail the first rung of the ladder.
    response = await gateway.post(path, body, modern_headers("tools/list"))
    assert_error(response, 400, INVALID_PARAMS, 8)


@pytest.mark.parametrize("path", PATHS)
async def test_initialize_without_params_is_invalid_params_and_opens_no_session(
    gateway: Gateway, path: str
) -> None:
    before = len(gateway.manager.gateway.sessions)
    body = {"jsonrpc": "2.0", "id": 9, "method": "initialize"}
    response = await gateway.post(path, body)
    assert_error(response, 200, INVALID_PARAMS, 9)
    assert "mcp-session-id" not in response.headers
    assert len(gateway.manager.gateway.sessions) == before


# --- ids are echoed exactly ------------------------------------------------------------------

ODD_IDS = [
    0,
    -1,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    "",
    "x" * 10_000,
    'quote " backslash \\ newline \n nul \x00 tab \t',
    "é 😀 \u2028 \ud7ff",
    "1",
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
async def test_odd_ids_are_echoed_back_exactly(gateway: Gateway, era: str, path: str) -> None:
    headers = await gateway.era_headers(era, path, "tools/call")
    name = echo_name(path)
    if era == "modern":
        headers = modern_headers("tools/call", name)
    for request_id in ODD_IDS:
        if era == "legacy":
            body: bytes | dict[str, Any] = call_body(request_id, path, "odd id")
        else:
            body = modern_body(request_id, "tools/call", {"name": name, "arguments": {"text": "i"}})
        response = await gateway.post(path, body, headers)
        assert response.status_code == 200, response.text
        answer = _json(response)
        assert answer["id"] == request_id and type(answer["id"]) is type(request_id)
        assert "result" in answer, answer
        # Errors echo the id too.
        if era == "legacy":
            bad: bytes | dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "no/such"}
            assert_error(await gateway.post(path, bad, headers), 200, METHOD_NOT_FOUND, request_id)
        else:
            bad = modern_body(request_id, "no/such")
            response = await gateway.post(path, bad, modern_headers("no/such"))
            assert_error(response, 404, METHOD_NOT_FOUND, request_id)


@pytest.mark.parametrize("path", PATHS)
async def test_the_same_id_on_two_sessions_reaches_each_its_own_answer(
    gateway: Gateway, path: str
) -> None:
    first, second = await gateway.open_session(path), await gateway.open_session(path)
    answers = await asyncio.gather(
        *(
            gateway.post(path, call_body(1, path, f"from {sid}"), gateway.session_headers(sid))
            for sid in (first, second)
        )
    )
    texts = [_json(a)["result"]["content"][0]["text"] for a in answers]
    assert texts == [f"from {first}", f"from {second}"]


# --- responses and notifications from the client ---------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_a_response_to_a_request_never_made_is_accepted_and_ignored(
    gateway: Gateway, path: str
) -> None:
    session_id = await gateway.open_session(path)
    headers = gateway.session_headers(session_id)
    for answer in (
        {"jsonrpc": "2.0", "id": "never-asked", "result": {}},
        {"jsonrpc": "2.0", "id": 12345, "result": {"x": 1}},
        {"jsonrpc": "2.0", "id": {"odd": True}, "result": {}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "client failed"}},
    ):
        response = await gateway.post(path, answer, headers)
        assert response.status_code == 202, response.text
        assert response.content == b""
    await gateway.legacy_call_works(path, session_id, "after stray responses")


@pytest.mark.parametrize("path", PATHS)
async def test_a_2026_client_posting_a_response_is_an_invalid_request(
    gateway: Gateway, path: str
) -> None:
    # No server-to-client requests exist in 2026-07-28, so no client responses either (the SDK
    # answers the same: 400, -32600).
    answer = {"jsonrpc": "2.0", "id": 1, "result": {}}
    response = await gateway.post(path, answer, modern_headers("tools/list"))
    assert_error(response, 400, INVALID_REQUEST)


@pytest.mark.parametrize("path", PATHS)
async def test_notifications_are_accepted_in_both_eras_even_odd_ones(
    gateway: Gateway, path: str
) -> None:
    session_id = await gateway.open_session(path)
    odd: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 404}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": {"a": 1}}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": "x"},
        {"jsonrpc": "2.0", "method": "notifications/no-such-thing"},
    ]
    for note in odd:
        response = await gateway.post(path, note, gateway.session_headers(session_id))
        assert response.status_code == 202, response.text
        response = await gateway.post(path, note, modern_headers(str(note["method"])))
        assert response.status_code == 202, response.text
    await gateway.legacy_call_works(path, session_id, "after odd notifications")


# --- wrong headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "accept",
    [None, "application/json", "text/event-stream", "text/html", "application/xml, text/plain"],
)
async def test_a_post_that_cannot_take_json_and_sse_is_not_acceptable(
    gateway: Gateway, era: str, path: str, accept: str | None
) -> None:
    # Both SDK paths answer 406 (legacy with -32600; modern with an empty body).
    headers = await gateway.era_headers(era, path, "tools/list")
    body = (
        modern_body(1, "tools/list")
        if era == "modern"
        else {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    if accept is None:
        response = await gateway.post(path, body, headers, drop=["accept"])
    else:
        response = await gateway.post(path, body, {**headers, "Accept": accept})
    assert_error(response, 406, INVALID_REQUEST)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("accept", ["*/*", "application/*, text/*", f"{ACCEPT};q=0.9"])
async def test_wildcard_accept_values_are_accepted(gateway: Gateway, era: str, accept: str) -> None:
    headers = await gateway.era_headers(era, ONE, "tools/list")
    body = (
        modern_body(1, "tools/list")
        if era == "modern"
        else {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    response = await gateway.post(ONE, body, {**headers, "Accept": accept})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_declared_json_is_an_unsupported_media_type(
    gateway: Gateway, era: str, path: str, content_type: str | None
) -> None:
    # 415 as the SDK's transport means to; in practice the SDK's security check answers first,
    # 400 with a plain-text body ("Invalid Content-Type header"); its modern path checks nothing.
    headers = await gateway.era_headers(era, path, "tools/list")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    if content_type is None:
        response = await gateway.post(path, body, headers, drop=["content-type"])
    else:
        response = await gateway.post(path, body, {**headers, "Content-Type": content_type})
    assert_error(response, 415, INVALID_REQUEST)


async def test_json_with_a_charset_is_json(gateway: Gateway) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover"}
    assert (await gateway.post(ONE, body, headers)).status_code == 200


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_cap_is_too_large(
    gateway: Gateway, era: str, path: str, chunked: bool
) -> None:
    headers = await gateway.era_headers(era, path, "tools/call")
    name = echo_name(path)
    big = "x" * BODY_CAP
    if era == "modern":
        headers = modern_headers("tools/call", name)
        body = modern_body(1, "tools/call", {"name": name, "arguments": {"text": big}})
    else:
        body = json.dumps(call_body(1, path, big)).encode()
    if chunked:

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        request = gateway.client.build_request(
            "POST",
            path,
            content=pieces(),
            headers={"Accept": ACCEPT, "Content-Type": "application/json", **headers},
        )
        assert "content-length" not in request.headers
        response = await gateway.client.send(request)
    else:
        response = await gateway.post(path, body, headers)
    # The SDK's own limit (RequestBodyLimitMiddleware, 4 MiB) answers 413 in plain text.
    assert_error(response, 413, INVALID_REQUEST)
    # Just under the cap still goes through, on the same session.
    fits = "y" * (BODY_CAP - 1024)
    if era == "modern":
        await gateway.modern_call_works(path, fits)
    else:
        await gateway.legacy_call_works(path, headers["Mcp-Session-Id"], fits)


@pytest.mark.parametrize("path", PATHS)
async def test_an_invalid_content_length_is_a_bad_request(gateway: Gateway, path: str) -> None:
    # A raw socket: httpx would not send a lying header. h11/httptools may refuse it first.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
            f"Accept: {ACCEPT}\r\nContent-Type: application/json\r\n"
            "Content-Length: lots\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    status = int(status_line.split()[1])
    assert status == 400, status_line


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_an_answer_is_framed_for_the_clients_http_version(
    gateway: Gateway, version: str
) -> None:
    """HTTP/1.1 gets the answer as one chunk (no Content-Length to check on the hot path);
    HTTP/1.0, which has no chunks, gets a Content-Length."""
    body = modern_body(7, "tools/call", {"name": "echo", "arguments": {"text": "framed"}})
    head = "".join(
        f"{name}: {value}\r\n" for name, value in modern_headers("tools/call", "echo").items()
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            f"POST {ONE} HTTP/{version}\r\nHost: 127.0.0.1:{gateway.port}\r\n"
            f"Accept: {ACCEPT}\r\nContent-Type: application/json\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        lines = raw.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if version == "1.1":
            assert fields.get("transfer-encoding") == "chunked", raw
            assert "content-length" not in fields, raw
            size = int(await asyncio.wait_for(reader.readline(), 5), 16)
            payload = await asyncio.wait_for(reader.readexactly(size), 5)
            assert await asyncio.wait_for(reader.readexactly(7), 5) == b"\r\n0\r\n\r\n"
        else:
            assert "transfer-encoding" not in fields, raw
            payload = await asyncio.wait_for(reader.readexactly(int(fields["content-length"])), 5)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # and the server closes
    finally:
        writer.close()
    assert lines[0].split()[1] == "200", raw
    answer = json.loads(payload)
    assert answer["id"] == 7 and "framed" in json.dumps(answer["result"]), answer


# --- Origin and Host --------------------------------------------------------------------------

FOREIGN_ORIGINS = [
    "http://evil.example.com",
    "https://127.0.0.1.evil.example.com",
    "null",
    "file://",
    "http://localhost:1",  # loopback, but not the gateway's port
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
async def test_a_foreign_origin_is_forbidden(
    gateway: Gateway, era: str, path: str, origin: str
) -> None:
    headers = await gateway.era_headers(era, path, "tools/list")
    body = (
        modern_body(1, "tools/list")
        if era == "modern"
        else {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    # The SDK answers 403 with a plain-text body; ours is a JSON-RPC error.
    assert_error(
        await gateway.post(path, body, {**headers, "Origin": origin}), 403, INVALID_REQUEST
    )
    if era == "legacy":
        session = headers["Mcp-Session-Id"]
        for method in ("GET", "DELETE"):
            response = await gateway.client.request(
                method, path, headers={**headers, "Origin": origin, "Accept": ACCEPT}
            )
            assert_error(response, 403, INVALID_REQUEST)
        # The forbidden DELETE ended nothing.
        await gateway.legacy_call_works(path, session, "the session survived")


async def test_hundreds_of_distinct_origins_are_each_judged_and_the_own_one_still_passes(
    gateway: Gateway,
) -> None:
    # The frontend remembers its verdict per (Origin, Host) pair; a flood of distinct foreign
    # origins overflows that memory, and every one of them is still refused.
    own = f"http://127.0.0.1:{gateway.port}"
    body = modern_body(1, "tools/list")
    for n in range(300):
        origin = own if n % 100 == 99 else f"http://evil-{n}.example.com"
        response = await gateway.post(
            AGGREGATE, body, {**modern_headers("tools/list"), "Origin": origin}
        )
        if origin == own:
            assert response.status_code == 200, response.text
        else:
            assert_error(response, 403, INVALID_REQUEST)


async def test_a_foreign_origin_cannot_open_a_session(gateway: Gateway) -> None:
    before = len(gateway.manager.gateway.sessions)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {}},
    }
    response = await gateway.post(AGGREGATE, body, {"Origin": "http://evil.example.com"})
    assert_error(response, 403, INVALID_REQUEST)
    assert "mcp-session-id" not in response.headers
    assert len(gateway.manager.gateway.sessions) == before


@pytest.mark.parametrize("path", PATHS)
async def test_the_gateways_own_origin_is_allowed(gateway: Gateway, path: str) -> None:
    own = f"http://127.0.0.1:{gateway.port}"
    response = await gateway.post(
        path, modern_body(1, "tools/list"), {**modern_headers("tools/list"), "Origin": own}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "origins",
    [["http://evil.example.com", "OWN"], ["OWN", "http://evil.example.com"]],
    ids=["foreign-first", "foreign-last"],
)
async def test_a_repeated_origin_is_forbidden_if_any_copy_is_foreign(
    gateway: Gateway, path: str, origins: list[str]
) -> None:
    own = f"http://127.0.0.1:{gateway.port}"
    pairs = [("Origin", own if o == "OWN" else o) for o in origins]
    response = await gateway.post(path, modern_body(1, "tools/list"), [*pairs])
    assert_error(response, 403, INVALID_REQUEST)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:{port}", "10.0.0.1"])
async def test_a_rebound_host_is_forbidden(
    gateway: Gateway, era: str, path: str, host: str
) -> None:
    # DNS rebinding: a page on evil.example.com whose name now resolves to 127.0.0.1. The
    # conformance suite asks for any 4xx; the SDK answers 421 in plain text, we 403 + -32600.
    headers = await gateway.era_headers(era, path, "tools/list")
    body = (
        modern_body(1, "tools/list")
        if era == "modern"
        else {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    host = host.format(port=gateway.port)
    response = await gateway.post(path, body, {**headers, "Host": host})
    assert_error(response, 403, INVALID_REQUEST)
    # As the conformance suite's dns-rebinding-protection sends it: Host and Origin both foreign.
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {}},
    }
    response = await gateway.post(path, initialize, {"Host": host, "Origin": f"http://{host}"})
    assert_error(response, 403, INVALID_REQUEST)


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}"])
async def test_a_loopback_host_is_allowed(gateway: Gateway, host: str) -> None:
    headers = {**modern_headers("tools/list"), "Host": host.format(port=gateway.port)}
    response = await gateway.post(AGGREGATE, modern_body(1, "tools/list"), headers)
    assert response.status_code == 200, response.text


# --- legacy sessions --------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_an_unknown_session_is_not_found(gateway: Gateway, path: str) -> None:
    # 404 as the spec requires. The code is the TypeScript SDK's -32001 "Session not found";
    # the Python SDK sends -32600 (its TODO(L62): "align error code once spec clarifies").
    headers = gateway.session_headers("no-such-session")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert_error(await gateway.post(path, body, headers), 404, SESSION_NOT_FOUND)
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert_error(await gateway.post(path, note, headers), 404, SESSION_NOT_FOUND)
    for method in ("GET", "DELETE"):
        response = await gateway.client.request(method, path, headers={**headers, "Accept": ACCEPT})
        assert_error(response, 404, SESSION_NOT_FOUND)


async def test_a_session_is_not_found_on_another_endpoint(gateway: Gateway) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for opened, used in ((AGGREGATE, ONE), (ONE, AGGREGATE)):
        session_id = await gateway.open_session(opened)
        headers = gateway.session_headers(session_id)
        assert_error(await gateway.post(used, body, headers), 404, SESSION_NOT_FOUND)
        await gateway.legacy_call_works(opened, session_id, "still valid where it was opened")


@pytest.mark.parametrize("path", PATHS)
async def test_a_request_without_a_session_id_is_a_bad_request(gateway: Gateway, path: str) -> None:
    # The SDK answers the same: 400, -32600 "Bad Request: Missing session ID".
    for body in (
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        call_body(2, path, "x"),
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ):
        response = await gateway.post(path, body, {"MCP-Protocol-Version": LEGACY})
        assert_error(response, 400, INVALID_REQUEST)
    response = await gateway.client.request("DELETE", path)
    assert_error(response, 400, INVALID_REQUEST)


@pytest.mark.parametrize("path", PATHS)
async def test_initialize_with_a_session_id_is_a_bad_request(gateway: Gateway, path: str) -> None:
    session_id = await gateway.open_session(path)
    before = len(gateway.manager.gateway.sessions)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {}},
    }
    response = await gateway.post(path, body, gateway.session_headers(session_id))
    assert_error(response, 400, INVALID_REQUEST)
    assert len(gateway.manager.gateway.sessions) == before
    await gateway.legacy_call_works(path, session_id, "not re-initialized")


@pytest.mark.parametrize("path", PATHS)
async def test_a_deleted_session_is_not_found_afterwards(gateway: Gateway, path: str) -> None:
    session_id = await gateway.open_session(path)
    headers = gateway.session_headers(session_id)
    before = len(gateway.manager.gateway.sessions)
    response = await gateway.client.request("DELETE", path, headers=headers)
    assert response.status_code == 200
    assert len(gateway.manager.gateway.sessions) == before - 1
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert_error(await gateway.post(path, body, headers), 404, SESSION_NOT_FOUND)
    for method in ("GET", "DELETE"):
        response = await gateway.client.request(method, path, headers={**headers, "Accept": ACCEPT})
        assert_error(response, 404, SESSION_NOT_FOUND)


@pytest.mark.parametrize("path", PATHS)
async def test_a_get_stream_needs_a_session_and_an_sse_accept(gateway: Gateway, path: str) -> None:
    response = await gateway.client.get(path, headers={"Accept": "text/event-stream"})
    assert_error(response, 400, INVALID_REQUEST)
    headers = gateway.session_headers(await gateway.open_session(path))
    response = await gateway.client.get(path, headers={**headers, "Accept": "application/json"})
    assert_error(response, 406, INVALID_REQUEST)


@pytest.mark.parametrize("path", PATHS)
async def test_a_second_get_stream_on_a_session_is_a_conflict(gateway: Gateway, path: str) -> None:
    session_id = await gateway.open_session(path)
    headers = {**gateway.session_headers(session_id), "Accept": "text/event-stream"}
    async with gateway.client.stream("GET", path, headers=headers) as first:
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        # The SDK answers the same: 409, -32600.
        assert_error(await gateway.client.get(path, headers=headers), 409, INVALID_REQUEST)
        # The open stream and the session keep working.
        await gateway.legacy_call_works(path, session_id, "with a stream open")

    # Once the first stream is gone, a new one may open.
    async def streaming() -> bool:
        session = gateway.manager.gateway.sessions.get(session_id, _scope(path))
        return session is not None and not session.streaming

    await eventually(streaming, timeout=5, what="the first GET stream to be released")
    async with gateway.client.stream("GET", path, headers=headers) as again:
        assert again.status_code == 200


def _scope(path: str) -> Scope:
    return Scope(None if path == AGGREGATE else "raw")


@pytest.mark.parametrize("path", PATHS)
async def test_other_http_methods_are_not_allowed(gateway: Gateway, path: str) -> None:
    for method in ("PUT", "PATCH"):
        response = await gateway.client.request(method, path, content=b"{}")
        # The SDK answers the same: 405, -32600, Allow: GET, POST, DELETE.
        assert_error(response, 405, INVALID_REQUEST)
        assert response.headers["allow"] == "GET, POST, DELETE"


# --- the 2026-07-28 envelope and its headers ---------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"_meta": None},
        {"_meta": {}},
        {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}},
        {"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}},
    ],
    ids=["no-params", "no-meta", "meta-null", "meta-empty", "no-capabilities", "no-version"],
)
async def test_a_2026_request_without_its_envelope_is_invalid_params(
    gateway: Gateway, path: str, params: dict[str, Any] | None
) -> None:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    if params is not None:
        body["params"] = params
    response = await gateway.post(path, body, modern_headers("tools/list"))
    assert_error(response, 400, INVALID_PARAMS, 1)


def _envelope(version: Any) -> dict[str, Any]:
    meta = {**modern_meta(), "io.modelcontextprotocol/protocolVersion": version}
    return {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": meta}}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("body_version", [LEGACY, "2099-01-01", 20260728, None])
async def test_a_protocol_version_header_that_disagrees_with_the_envelope_is_a_mismatch(
    gateway: Gateway, path: str, body_version: Any
) -> None:
    response = await gateway.post(path, _envelope(body_version), modern_headers("tools/list"))
    assert_error(response, 400, HEADER_MISMATCH, 3)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("header", ["tools/call", "TOOLS/LIST", "", None])
async def test_an_mcp_method_header_that_disagrees_with_the_body_is_a_mismatch(
    gateway: Gateway, path: str, header: str | None
) -> None:
    headers = {"MCP-Protocol-Version": MODERN}
    if header is not None:
        headers["Mcp-Method"] = header
    response = await gateway.post(path, modern_body(4, "tools/list"), headers)
    assert_error(response, 400, HEADER_MISMATCH, 4)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "other",
        "=?base64?bm9wZQ==?=",  # "nope"
        "=?base64?not base64?=",
        "=?base64?ZWNobw=?=",  # "echo" with one pad too few
    ],
    ids=["missing", "empty", "other", "b64-other", "b64-broken", "b64-bad-padding"],
)
async def test_an_mcp_name_header_that_disagrees_with_the_tool_is_a_mismatch(
    gateway: Gateway, path: str, header: str | None
) -> None:
    name = echo_name(path)
    headers = modern_headers("tools/call", header)
    body = modern_body(5, "tools/call", {"name": name, "arguments": {"text": "x"}})
    assert_error(await gateway.post(path, body, headers), 400, HEADER_MISMATCH, 5)


async def test_only_the_canonical_base64_of_a_name_matches(gateway: Gateway) -> None:
    # "ZWNobx==" decodes to "echo" too (non-zero trailing bits); the SDK refuses it, and so do we.
    body = modern_body(5, "tools/call", {"name": "echo", "arguments": {"text": "x"}})
    response = await gateway.post(ONE, body, modern_headers("tools/call", "=?base64?ZWNobx==?="))
    assert_error(response, 400, HEADER_MISMATCH, 5)
    response = await gateway.post(ONE, body, modern_headers("tools/call", "=?base64?ZWNobw==?="))
    assert response.status_code == 200


@pytest.mark.parametrize("path", PATHS)
async def test_an_mcp_name_header_in_base64_matches(gateway: Gateway, path: str) -> None:
    name = echo_name(path)
    encoded = f"=?base64?{base64.b64encode(name.encode()).decode()}?="
    body = modern_body(6, "tools/call", {"name": name, "arguments": {"text": "b64"}})
    response = await gateway.post(path, body, modern_headers("tools/call", encoded))
    assert response.status_code == 200, response.text
    assert _json(response)["result"]["content"][0]["text"] == "b64"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("repeated", ["Mcp-Method", "Mcp-Name", "MCP-Protocol-Version"])
async def test_a_repeated_routing_header_is_a_mismatch(
    gateway: Gateway, path: str, repeated: str
) -> None:
    # As the SDK's find_duplicated_routing_header: first-copy and last-copy readers disagree.
    name = echo_name(path)
    pairs = list(modern_headers("tools/call", name).items())
    pairs.append((repeated, dict(pairs)[repeated]))
    body = modern_body(7, "tools/call", {"name": name, "arguments": {"text": "x"}})
    assert_error(await gateway.post(path, body, pairs), 400, HEADER_MISMATCH, 7)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("version", ["2099-01-01", "2026-07-29", "garbage"])
async def test_an_unsupported_2026_era_version_names_the_supported_ones(
    gateway: Gateway, path: str, version: str
) -> None:
    body = _envelope(version)
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": "tools/list"}
    response = await gateway.post(path, body, headers)
    assert_error(response, 400, UNSUPPORTED_VERSION, 3)
    data = _json(response)["error"]["data"]
    assert data == {"supported": [MODERN], "requested": version}


@pytest.mark.parametrize("path", PATHS)
async def test_get_and_delete_are_not_allowed_in_2026(gateway: Gateway, path: str) -> None:
    # The SDK answers 405 with Allow: POST and an empty body; ours carries a JSON-RPC error.
    for method in ("GET", "DELETE"):
        response = await gateway.client.request(
            method, path, headers={"MCP-Protocol-Version": MODERN, "Accept": ACCEPT}
        )
        assert_error(response, 405, INVALID_REQUEST)
        assert response.headers["allow"] == "POST"


# --- endpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/servers/nope/mcp",
        "/servers/nope/mcp/",
        "/servers/UPPER/mcp",
        "/servers/a_b/mcp",
        "/servers/-raw/mcp",
        "/servers//mcp",
        "/servers/raw/extra/mcp",
        "/servers/%2e%2e/mcp",
        "/servers/" + "a" * 41 + "/mcp",
        "/servers/raw%2Fx/mcp",
    ],
)
async def test_an_endpoint_for_no_server_is_not_found(gateway: Gateway, path: str) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {}},
    }
    before = len(gateway.manager.gateway.sessions)
    response = await gateway.post(path, body)
    assert_error(response, 404, INVALID_REQUEST)
    response = await gateway.post(path, modern_body(1, "tools/list"), modern_headers("tools/list"))
    assert_error(response, 404, INVALID_REQUEST)
    response = await gateway.client.get(path, headers={"Accept": "text/event-stream"})
    assert_error(response, 404, INVALID_REQUEST)
    assert len(gateway.manager.gateway.sessions) == before


# --- deep but parseable params ----------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("depth", [100, 300, 1000])
async def test_deeply_nested_arguments_get_a_json_rpc_answer_never_a_5xx(
    gateway: Gateway, era: str, path: str, depth: int
) -> None:
    # Parseable (orjson reads up to 1,024 levels) but beyond what orjson writes (255): the call
    # cannot be forwarded. The answer is a JSON-RPC error for this request, and nothing breaks.
    headers = await gateway.era_headers(era, path, "tools/call")
    name = echo_name(path)
    nested = "[" * depth + "]" * depth
    arguments = '{"text": "deep", "extra": ' + nested + "}"
    params = '{"name": "' + name + '", "arguments": ' + arguments
    if era == "modern":
        headers = modern_headers("tools/call", name)
        params += ', "_meta": ' + json.dumps(modern_meta())
    body = '{"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": ' + params + "}}"
    response = await gateway.post(path, body.encode(), headers)
    assert response.status_code < 500
    answer = _json(response)
    assert answer["id"] == 11
    if depth < 255:
        assert answer["result"]["content"][0]["text"] == "deep"
    else:
        assert "error" in answer, answer
