"""JSON-RPC framing and the era rules: pure functions, no I/O."""

from __future__ import annotations

import orjson
import pytest

from roundhouse.errors import UpstreamProtocolError
from roundhouse.protocol import eras, jsonrpc
from roundhouse.protocol.jsonrpc import DecodeError


def test_an_encoded_message_is_one_line_even_when_its_strings_hold_newlines() -> None:
    message = jsonrpc.make_request(
        1, "tools/call", {"name": "echo", "arguments": {"text": "a\nb\r\n"}}
    )
    line = jsonrpc.encode_line(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line
    assert orjson.loads(line) == message
    assert jsonrpc.encode(message) == line[:-1]


def test_decoding_a_request_returns_the_dict() -> None:
    assert jsonrpc.decode(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') == {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "ping",
    }


def test_decoding_broken_json_returns_a_parse_error_value() -> None:
    result = jsonrpc.decode(b"{not json")
    assert isinstance(result, DecodeError)
    assert result.code == jsonrpc.PARSE_ERROR


@pytest.mark.parametrize("raw", [b"42", b'"text"', b'{"id": 1, "method": "ping"}', b"null"])
def test_decoding_json_that_is_not_a_message_returns_an_invalid_request_value(raw: bytes) -> None:
    result = jsonrpc.decode(raw)
    assert isinstance(result, DecodeError)
    assert result.code == jsonrpc.INVALID_REQUEST


def test_decoding_a_batch_returns_the_list_for_the_caller_to_judge() -> None:
    assert jsonrpc.decode(b'[{"jsonrpc":"2.0","method":"a"}]') == [
        {"jsonrpc": "2.0", "method": "a"}
    ]


def test_the_builders_make_spec_shaped_messages() -> None:
    assert jsonrpc.make_request(7, "ping") == {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    assert jsonrpc.make_notification("notifications/initialized") == {
        "jsonrpc": "2.0",
        "method": "notifications/initialized",
    }
    assert jsonrpc.make_notification("x", {"a": 1})["params"] == {"a": 1}
    assert jsonrpc.make_result("r", {}) == {"jsonrpc": "2.0", "id": "r", "result": {}}
    assert jsonrpc.make_error(None, jsonrpc.METHOD_NOT_FOUND, "nope", {"m": "x"}) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32601, "message": "nope", "data": {"m": "x"}},
    }


def test_the_error_codes_match_json_rpc_and_mcp() -> None:
    assert (jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST, jsonrpc.METHOD_NOT_FOUND) == (
        -32700,
        -32600,
        -32601,
    )
    assert (jsonrpc.INVALID_PARAMS, jsonrpc.INTERNAL_ERROR) == (-32602, -32603)
    assert (
        jsonrpc.HEADER_MISMATCH,
        jsonrpc.MISSING_REQUIRED_CLIENT_CAPABILITY,
        jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
    ) == (-32020, -32021, -32022)


def test_the_classifiers_tell_requests_notifications_and_responses_apart() -> None:
    request = jsonrpc.make_request(1, "ping")
    note = jsonrpc.make_notification("notifications/progress")
    result = jsonrpc.make_result(1, {})
    error = jsonrpc.make_error(1, -32603, "x")
    assert [jsonrpc.is_request(m) for m in (request, note, result, error)] == [1, 0, 0, 0]
    assert [jsonrpc.is_notification(m) for m in (request, note, result, error)] == [0, 1, 0, 0]
    assert [jsonrpc.is_response(m) for m in (request, note, result, error)] == [0, 0, 1, 1]


def test_the_id_of_an_oversize_answer_is_read_from_its_head() -> None:
    head = b'{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"xxxx'
    assert jsonrpc.recover_id(head) == 42
    assert jsonrpc.recover_id(b'{"id": "abc", "result": {') == "abc"


def test_an_id_nested_inside_the_result_is_not_taken_for_the_messages_own() -> None:
    head = b'{"jsonrpc":"2.0","result":{"items":[{"id":5,"text":"a \\"id\\": 6 b'
    assert jsonrpc.recover_id(head) is None


def test_the_id_of_an_oversize_answer_is_read_from_its_tail_when_the_result_comes_first() -> None:
    head = b'{"jsonrpc":"2.0","result":{"content":[{"id":9,"text":"xxxx'
    tail = b'xxxx"}]},"id":17}'
    assert jsonrpc.recover_id(head, tail) == 17
    assert jsonrpc.recover_id(head, b'xx"}]},"id":17,"jsonrpc":"2.0"}\r') == 17
    assert jsonrpc.recover_id(head, b'xxxx"}]}}') is None


# -- eras -----------------------------------------------------------------------------------------


def test_the_discover_probe_carries_the_three_reserved_meta_keys() -> None:
    request = eras.discover_request(1, client_info={"name": "t", "version": "1"})
    assert request["method"] == "server/discover"
    assert request["params"]["_meta"] == {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }


def test_the_initialize_request_offers_the_latest_handshake_version() -> None:
    request = eras.initialize_request(3, capabilities={"roots": {}})
    assert request["method"] == "initialize"
    assert request["params"] == {
        "protocolVersion": "2025-11-25",
        "capabilities": {"roots": {}},
        "clientInfo": eras.DEFAULT_CLIENT_INFO,
    }


def test_versions_belong_to_their_era() -> None:
    assert [eras.era_of_version(v) for v in eras.HANDSHAKE_VERSIONS] == ["legacy"] * 4
    assert eras.era_of_version("2026-07-28") == "modern"
    assert eras.era_of_version("1999-01-01") is None


def test_method_not_found_to_the_probe_means_fall_back_to_initialize() -> None:
    assert eras.after_discover_error(-32601, None, first_attempt=True) is None
    assert eras.after_discover_error(-32603, {"anything": 1}, first_attempt=True) is None


def test_unsupported_version_naming_a_mutual_modern_version_earns_one_reprobe() -> None:
    data = {"supported": ["2025-11-25", "2026-07-28"]}
    assert eras.after_discover_error(-32022, data, first_attempt=True) == "2026-07-28"
    assert eras.after_discover_error(-32022, data, first_attempt=False) is None


def test_a_modern_only_server_with_no_version_in_common_is_an_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="2027-01-01"):
        eras.after_discover_error(-32022, {"supported": ["2027-01-01"]}, first_attempt=True)


def test_a_discover_result_without_a_modern_version_reads_as_legacy() -> None:
    assert eras.modern_version_of({"supportedVersions": ["2025-11-25"], "capabilities": {}}) is None
    assert eras.modern_version_of({"capabilities": {}}) is None
    assert eras.modern_version_of({"supportedVersions": ["2026-07-28"], "capabilities": {}}) == (
        "2026-07-28"
    )


def test_an_initialize_result_with_an_unknown_version_is_refused() -> None:
    result = {"protocolVersion": "1.0", "capabilities": {}, "serverInfo": {"name": "x"}}
    with pytest.raises(UpstreamProtocolError, match=r"1\.0"):
        eras.Handshake.from_initialize_result(result, client_info={}, client_capabilities={})


def test_a_modern_handshake_stamps_meta_onto_params_and_keeps_the_callers_meta() -> None:
    shaken = eras.Handshake.from_discover_result(
        {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}},
        },
        "2026-07-28",
        client_info={"name": "c", "version": "2"},
        client_capabilities={},
    )
    assert shaken.server_info == {"name": "s", "version": "1"}
    params = {"name": "echo", "_meta": {"progressToken": 5}}
    stamped = shaken.stamp(params)
    assert stamped is not None
    assert stamped["_meta"]["progressToken"] == 5
    assert stamped["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert params == {"name": "echo", "_meta": {"progressToken": 5}}


def test_a_legacy_handshake_leaves_params_alone() -> None:
    shaken = eras.Handshake.from_initialize_result(
        {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "x"}},
        client_info={},
        client_capabilities={},
    )
    params = {"name": "echo"}
    assert shaken.stamp(params) is params
    assert shaken.era == "legacy"


def test_header_values_outside_printable_ascii_are_base64_wrapped() -> None:
    assert eras.encode_header_value("echo") == "echo"
    assert eras.encode_header_value("héllo") == "=?base64?aMOpbGxv?="
    assert eras.encode_header_value(" padded") == "=?base64?IHBhZGRlZA==?="
