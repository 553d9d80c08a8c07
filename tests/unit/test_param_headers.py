"""``x-mcp-header`` / ``Mcp-Param-*`` validation: unit cases plus a differential test against the
SDK's ``validate_mcp_param_headers`` (the gateway module itself never imports the SDK)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.shared import inbound
from starlette.datastructures import Headers

from roundhouse.protocol import param_headers as ph

_ASCII = "outside visible ASCII"


def _b64(text: str) -> str:
    return f"=?base64?{base64.b64encode(text.encode()).decode()}?="


def _schema(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def _check(
    schema: Any, arguments: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> str | None:
    return ph.validate(ph.header_map(schema), arguments, headers)


REGION = _schema(
    region={"type": "string", "x-mcp-header": "Region"},
    count={"type": "integer", "x-mcp-header": "Count"},
    flag={"type": "boolean", "x-mcp-header": "Flag"},
    other={"type": "string"},
)


# -- header_map ------------------------------------------------------------------------------


def test_header_map_lists_annotated_paths_with_token_and_schema() -> None:
    schema = _schema(
        a={"type": "string", "x-mcp-header": "A"},
        outer={
            "type": "object",
            "properties": {"inner": {"type": "integer", "x-mcp-header": "Inner"}},
        },
        plain={"type": "string"},
    )
    hm = ph.header_map(schema)
    assert hm == {
        ("a",): ("A", {"type": "string", "x-mcp-header": "A"}),
        ("outer", "inner"): ("Inner", {"type": "integer", "x-mcp-header": "Inner"}),
    }


@pytest.mark.parametrize("schema", [None, {}, 5, "x", [], {"type": "object"}])
def test_header_map_without_annotations_is_empty(schema: Any) -> None:
    assert ph.header_map(schema) == {}


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"x-mcp-header": "Root", "type": "string"}, id="root"),
        pytest.param(_schema(a={"type": "number", "x-mcp-header": "A"}), id="number"),
        pytest.param(_schema(a={"type": "null", "x-mcp-header": "A"}), id="null"),
        pytest.param(_schema(a={"type": "object", "x-mcp-header": "A"}), id="object"),
        pytest.param(_schema(a={"x-mcp-header": "A"}), id="no-type"),
        pytest.param(_schema(a={"type": ["string"], "x-mcp-header": "A"}), id="type-list"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": 5}), id="token-int"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": ""}), id="token-empty"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": "My Region"}), id="space"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": "A:B"}), id="colon"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": "Région"}), id="non-ascii"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": "A\t1"}), id="tab"),
        pytest.param(_schema(a={"type": "string", "x-mcp-header": "A\n"}), id="newline"),
        pytest.param(
            _schema(
                a={"type": "string", "x-mcp-header": "MyField"},
                b={"type": "string", "x-mcp-header": "myfield"},
            ),
            id="duplicate-case-insensitive",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "items": {"type": "string", "x-mcp-header": "I"},
            },
            id="under-items",
        ),
        pytest.param(
            {"anyOf": [_schema(a={"type": "string", "x-mcp-header": "A"})]}, id="under-anyOf"
        ),
        pytest.param(
            {"$defs": {"d": _schema(a={"type": "string", "x-mcp-header": "A"})}},
            id="under-defs",
        ),
        pytest.param(
            _schema(a={"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}),
            id="array-items",
        ),
    ],
)
def test_an_invalid_annotation_disables_validation(schema: Any) -> None:
    assert ph.header_map(schema) is None
    assert inbound.find_invalid_x_mcp_header(schema) is not None
    # A header that would otherwise mismatch is not checked.
    assert _check(schema, {"a": "x"}, [(b"mcp-param-a", b"y")]) is None


def test_annotations_inside_instance_data_and_refs_are_not_schema_positions() -> None:
    schema = _schema(
        a={
            "type": "string",
            "default": {"x-mcp-header": "D"},
            "const": {"x-mcp-header": "C"},
            "examples": [{"x-mcp-header": "E"}],
        },
        b={"$ref": "#/$defs/whatever"},
    )
    assert ph.header_map(schema) == {}


# -- validate: presence ------------------------------------------------------------------------


def test_matching_headers_pass() -> None:
    args = {"region": "us-west1", "count": 3, "flag": True, "other": "z"}
    headers = [
        (b"mcp-param-region", b"us-west1"),
        (b"mcp-param-count", b"3"),
        (b"mcp-param-flag", b"true"),
    ]
    assert _check(REGION, args, headers) is None


def test_absent_together_passes_and_null_counts_as_absent() -> None:
    assert _check(REGION, {}, []) is None
    assert _check(REGION, {"region": None, "count": None}, []) is None


def test_missing_header_for_present_argument_fails() -> None:
    msg = _check(REGION, {"region": "eu"}, [])
    assert msg == (
        "Mcp-Param-Region header is missing but the request body's 'region' argument is present"
    )


def test_header_for_absent_or_null_argument_fails() -> None:
    expected = (
        "Mcp-Param-Region header is present but the request body's 'region' argument is absent"
    )
    assert _check(REGION, {}, [(b"mcp-param-region", b"eu")]) == expected
    assert _check(REGION, {"region": None}, [(b"mcp-param-region", b"eu")]) == expected


def test_mismatched_value_fails_and_values_are_case_sensitive() -> None:
    msg = _check(REGION, {"region": "eu"}, [(b"mcp-param-region", b"EU")])
    assert msg == "Mcp-Param-Region header does not match the request body's 'region' argument"


def test_header_names_are_case_insensitive_and_unknown_param_headers_ignored() -> None:
    headers = [(b"MCP-PARAM-REGION", b"eu"), (b"mcp-param-unknown", b"whatever")]
    assert _check(REGION, {"region": "eu"}, headers) is None


def test_optional_whitespace_around_the_value_is_trimmed() -> None:
    assert _check(REGION, {"region": "eu"}, [(b"mcp-param-region", b"  eu\t")]) is None


def test_empty_string_argument_matches_an_empty_header() -> None:
    assert _check(REGION, {"region": ""}, [(b"mcp-param-region", b"")]) is None
    assert _check(REGION, {"region": ""}, []) is not None


def test_unrenderable_argument_needs_no_header_but_rejects_one() -> None:
    for value in ({"a": 1}, [1, 2], 10**5000):
        assert _check(REGION, {"region": value}, []) is None
        assert _check(REGION, {"region": value}, [(b"mcp-param-region", b"x")]) is not None


def test_duplicated_param_header_fails_even_with_equal_values() -> None:
    headers = [(b"mcp-param-region", b"eu"), (b"Mcp-Param-Region", b"eu")]
    msg = _check(REGION, {"region": "eu"}, headers)
    assert msg == "Mcp-Param-Region header appears more than once"
    # A duplicated header no annotation declares is not this module's business.
    dup_unknown = [(b"mcp-param-zzz", b"1"), (b"mcp-param-zzz", b"2")]
    assert _check(REGION, {}, dup_unknown) is None


def test_no_annotations_means_nothing_to_check() -> None:
    assert ph.validate({}, {"a": 1}, [(b"mcp-param-a", b"2")]) is None
    assert ph.validate(None, {"a": 1}, [(b"mcp-param-a", b"2")]) is None


# -- validate: rendering and numbers -----------------------------------------------------------


def test_booleans_render_lowercase() -> None:
    assert _check(REGION, {"flag": False}, [(b"mcp-param-flag", b"false")]) is None
    assert _check(REGION, {"flag": True}, [(b"mcp-param-flag", b"True")]) is not None
    assert _check(REGION, {"flag": True}, [(b"mcp-param-flag", b"1")]) is not None


@pytest.mark.parametrize(
    ("value", "header", "ok"),
    [
        (42, b"42", True),
        (42, b"42.0", True),
        (42, b"42.000", True),
        (42.0, b"42", True),
        (42.0, b"42.0", True),
        (42, b"042", True),
        (-7, b"-7", True),
        (42, b"42.5", False),
        (42, b"4.2e1", False),
        (42, b"+42", False),
        (42, b" 43 ", False),
        (2**70, str(2**70).encode(), True),
        (2**70, str(2**70).encode() + b".0", True),
        (2**70, str(2**70 + 1).encode(), False),
        (10**20, b"100000000000000000000", True),
        (float(2**60), str(2**60).encode(), True),
    ],
)
def test_integer_properties_compare_numerically(value: Any, header: bytes, ok: bool) -> None:
    result = _check(REGION, {"count": value}, [(b"mcp-param-count", header)])
    assert (result is None) is ok


def test_numeric_comparison_is_only_for_integer_typed_properties() -> None:
    # A string-typed property holding an int compares against str(value).
    assert _check(REGION, {"region": 42}, [(b"mcp-param-region", b"42")]) is None
    assert _check(REGION, {"region": 42}, [(b"mcp-param-region", b"42.0")]) is not None
    # A non-integral float on an integer property compares textually.
    assert _check(REGION, {"count": 1.5}, [(b"mcp-param-count", b"1.5")]) is None
    assert _check(REGION, {"count": 1.5}, [(b"mcp-param-count", b"1.50")]) is not None
    # A bool on an integer property is rendered, never treated as a number.
    assert _check(REGION, {"count": True}, [(b"mcp-param-count", b"true")]) is None
    assert _check(REGION, {"count": True}, [(b"mcp-param-count", b"1")]) is not None


# -- validate: base64 sentinel and characters --------------------------------------------------


def test_base64_sentinel_is_decoded() -> None:
    value = "  héllo, 世界\n"
    assert _check(REGION, {"region": value}, [(b"mcp-param-region", _b64(value).encode())]) is None
    hello = base64.b64encode(b"Hello").decode()
    assert (
        _check(REGION, {"region": "Hello"}, [(b"mcp-param-region", _b64("Hello").encode())]) is None
    )
    # Plain values may be sent base64-wrapped too.
    assert _check(REGION, {"count": 7}, [(b"mcp-param-count", _b64("7").encode())]) is None
    # Without the complete wrapper the value is literal.
    assert _check(REGION, {"region": hello}, [(b"mcp-param-region", hello.encode())]) is None
    partial = f"=?base64?{hello}"
    assert _check(REGION, {"region": partial}, [(b"mcp-param-region", partial.encode())]) is None


@pytest.mark.parametrize(
    "header",
    [
        b"=?base64?SGVsbG8?=",  # missing padding (conformance: invalid padding)
        b"=?base64?SGVs!!!bG8=?=",  # non-alphabet characters (conformance: invalid chars)
        b"=?base64?SGVsbG9=?=",  # non-canonical trailing bits
        b"=?base64?SGVs bG8=?=",  # embedded space
        b"=?base64?SGVsbG8-?=",  # url-safe alphabet
        b"=?base64?/w==?=",  # not UTF-8
    ],
)
def test_malformed_sentinel_fails(header: bytes) -> None:
    msg = _check(REGION, {"region": "Hello"}, [(b"mcp-param-region", header)])
    assert msg == "Mcp-Param-Region header carries a malformed base64 sentinel value"
    assert ph.decode_header_value(header.decode()) is None


@pytest.mark.parametrize(
    "header",
    [b"caf\xc3\xa9", b"caf\xe9", b"a\x00b", b"a\x7fb", b"a\tb", b"a\rb", b"=?base64?\xe9?="],
)
def test_values_outside_visible_ascii_fail(header: bytes) -> None:
    # Even when the latin-1 reading would equal the body ("café" for b"caf\xe9").
    for body in ("café", header.decode("latin-1"), "x"):
        msg = _check(REGION, {"region": body}, [(b"mcp-param-region", header)])
        assert msg is not None and _ASCII in msg


def test_decode_header_value() -> None:
    assert ph.decode_header_value("plain") == "plain"
    assert ph.decode_header_value("=?base64??=") == ""
    assert ph.decode_header_value(_b64("é")) == "é"
    assert ph.decode_header_value("=?base64?é?=") is None
    assert ph.decode_header_value("=?base64?QQ==?=\n") == "=?base64?QQ==?=\n"


@pytest.mark.parametrize(
    "value", ["plain", "", " lead", "trail ", "tab\t", "é", "=?base64?QQ==?=", "a\nb", "~!"]
)
def test_encode_matches_the_sdk_and_round_trips(value: str) -> None:
    assert ph.encode_header_value(value) == inbound.encode_header_value(value)
    assert ph.decode_header_value(ph.encode_header_value(value)) == value


# -- nested paths ------------------------------------------------------------------------------

NESTED = _schema(
    target={
        "type": "object",
        "properties": {
            "zone": {"type": "string", "x-mcp-header": "Zone"},
            "deep": {
                "type": "object",
                "properties": {"id": {"type": "integer", "x-mcp-header": "Id"}},
            },
        },
    }
)


def test_nested_properties_are_read_along_the_path() -> None:
    args = {"target": {"zone": "a", "deep": {"id": 5}}}
    headers = [(b"mcp-param-zone", b"a"), (b"mcp-param-id", b"5.0")]
    assert _check(NESTED, args, headers) is None
    msg = _check(NESTED, args, headers[:1])
    assert msg == (
        "Mcp-Param-Id header is missing but the request body's 'target.deep.id' argument is present"
    )


def test_a_path_through_a_missing_or_non_object_node_is_absent() -> None:
    assert _check(NESTED, {}, []) is None
    assert _check(NESTED, {"target": "flat"}, []) is None
    assert _check(NESTED, {"target": {"deep": [5]}}, []) is None
    assert _check(NESTED, {"target": "flat"}, [(b"mcp-param-zone", b"flat")]) is not None


# -- param_headers -----------------------------------------------------------------------------


def test_param_headers_mirror_the_sdk_emitter() -> None:
    hm = ph.header_map(NESTED)
    assert hm is not None
    args = {"target": {"zone": " spaced ", "deep": {"id": 10**5000}}}
    sdk = inbound.mcp_param_headers(inbound.x_mcp_header_map(NESTED), args)
    assert dict(ph.param_headers(hm, args)) == sdk == {"Mcp-Param-Zone": _b64(" spaced ")}
    raw = [(k.lower().encode(), v.encode()) for k, v in ph.param_headers(hm, args)]
    assert ph.validate(hm, args, raw) is None


# -- differential against the SDK --------------------------------------------------------------

_GOOD_TOKENS = ["Region", "Tenant", "X", "Id", "Zone", "Flag-2", "a.b_c~"]
_BAD_TOKENS: list[Any] = ["My Region", "Région", "", "A:B", "A\n", 5, None]
_NAMES = ["a", "b", "c"]

_ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(_NAMES), st.integers(), max_size=2),
)
_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "string": st.one_of(
        st.text(max_size=8),
        st.sampled_from(["", " x", "x ", "Hello", "=?base64?SGVsbG8=?=", "42", "true", "é"]),
    ),
    "integer": st.one_of(
        st.integers(-(2**80), 2**80),
        st.integers(-1000, 1000),
        st.integers(-(2**70), 2**70).map(float),
        st.sampled_from([0, 42, -1, 2**53 + 1, 10**5000, 42.0, 1.5, -0.0, 1e20, float(2**60)]),
        st.floats(),
    ),
    "boolean": st.booleans(),
}


@st.composite
def _schemas(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], str, str]]]:
    """A schema, mostly valid, and its intended annotations as (path, token, type)."""
    tokens = iter(draw(st.permutations(_GOOD_TOKENS)))
    annotated: list[tuple[tuple[str, ...], str, str]] = []

    def props(prefix: tuple[str, ...], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = st.lists(st.sampled_from(_NAMES), unique=True, min_size=1, max_size=3)
        for name in draw(names):
            path = (*prefix, name)
            if depth < 2 and draw(st.integers(0, 3)) == 0:
                out[name] = {"type": "object", "properties": props(path, depth + 1)}
                continue
            kind = draw(st.sampled_from(["string", "integer", "boolean"]))
            out[name] = {"type": kind}
            token = next(tokens, None)
            if token is not None and draw(st.integers(0, 5)) > 0:
                out[name]["x-mcp-header"] = token
                annotated.append((path, token, kind))
        return out

    schema: dict[str, Any] = {"type": "object", "properties": props((), 0)}
    if annotated and draw(st.integers(0, 7)) == 0:  # corrupt one way or another
        path, token, _ = draw(st.sampled_from(annotated))
        node = schema
        for key in path:
            node = node["properties"][key]
        how = draw(st.integers(0, 6))
        if how == 0:
            node["x-mcp-header"] = draw(st.sampled_from(_BAD_TOKENS))
        elif how == 1:
            node["type"] = draw(st.sampled_from(["number", "null", "object", ["string"]]))
        elif how == 2:
            del node["type"]
        elif how == 3:
            schema["properties"]["zz"] = {"type": "string", "x-mcp-header": token.upper()}
        elif how == 4:
            node["items"] = {"type": "string", "x-mcp-header": "Other"}
        elif how == 5:
            schema["anyOf"] = [{"properties": {"q": {"type": "string", "x-mcp-header": "Q"}}}]
        else:
            schema["x-mcp-header"] = "Root"
    return schema, annotated


def _header_values(value: Any) -> st.SearchStrategy[bytes]:
    """Header values for a body value: what a conforming client sends, near misses, noise."""
    rendered = inbound._render_header_scalar(value)
    noise = st.one_of(
        st.sampled_from([b"x", b"", b"true", b"42", b"=?base64?SGVsbG8?="]), st.binary(max_size=6)
    )
    if rendered is None:
        return noise
    wrapped = _b64(rendered)
    exact = [inbound.encode_header_value(rendered).encode()]
    # Different spelling, same value (or, for the SDK's number rule, maybe not).
    alike = [
        wrapped.encode(),
        f" {exact[0].decode()}\t".encode(),
        f"  {exact[0].decode()} ".encode(),
    ]
    near = [
        wrapped.replace("=?=", "?=").encode(),  # padding dropped
        (wrapped[:9] + "!" + wrapped[9:]).encode(),  # non-alphabet character
        wrapped[:-2].encode(),  # no closing ?=: literal
        rendered.upper().encode("utf-8"),
        rendered.encode("utf-8"),
        rendered.encode("latin-1", "replace"),
    ]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and value == value and abs(value) != float("inf") and abs(value) < 10**100:
        whole = int(value)
        alike += [f"{whole}".encode(), f"{whole}.0".encode(), f"{whole}.00".encode()]
        alike += [f"0{whole}".encode(), f"-{whole}".encode(), f"{whole}e0".encode()]
        near += [f"{whole + 1}".encode(), f"{whole}.5".encode(), f"{whole}.0x".encode()]
    return st.integers(0, 9).flatmap(
        lambda roll: (
            st.sampled_from(exact)
            if roll < 5
            else st.sampled_from(alike)
            if roll < 7
            else st.sampled_from(near)
            if roll < 9
            else noise
        )
    )


def _set_path(args: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = args
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):  # an earlier case flattened this parent
            return
    node[path[-1]] = value


@st.composite
def _cases(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[bytes, bytes]]]:
    schema, annotated = draw(_schemas())
    args: dict[str, Any] = {}
    headers: list[tuple[bytes, bytes]] = []
    for path, token, kind in annotated:
        roll = draw(st.integers(0, 9))
        value = None
        if roll > 0:  # argument present (maybe null / off-type / unrenderable)
            value = draw(_BY_TYPE[kind] if roll > 2 else _ANY_SCALAR)
            _set_path(args, path, value)
            if roll == 9 and len(path) > 1:  # break the path with a non-object parent
                _set_path(args, path[:1], "flat")
        if draw(st.integers(0, 9)) > 0 or roll == 0:  # header present
            name = f"Mcp-Param-{token}".encode()
            headers.append(
                (name.lower() if draw(st.booleans()) else name, draw(_header_values(value)))
            )
    if headers and draw(st.integers(0, 9)) == 0:
        headers.append(draw(st.sampled_from(headers)))
    if draw(st.integers(0, 4)) == 0:
        headers.append((b"mcp-param-unknown", draw(st.binary(max_size=4))))
    headers.append((b"content-type", b"application/json"))
    return schema, args, draw(st.permutations(headers))


def _sdk(
    schema: Any, args: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> str | Exception | None:
    # What the SDK sees behind a real ASGI server: OWS already trimmed, latin-1 decoded.
    trimmed = [(n.lower(), v.strip(b" \t")) for n, v in headers]
    try:
        rejection = inbound.validate_mcp_param_headers(schema, args, Headers(raw=trimmed))
    except ValueError as exc:  # non-ASCII inside a sentinel payload
        return exc
    return None if rejection is None else rejection.message


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_cases())
def test_differential_against_the_sdk(
    case: tuple[dict[str, Any], dict[str, Any], list[tuple[bytes, bytes]]],
) -> None:
    schema, args, headers = case
    hm = ph.header_map(schema)
    assert (hm is None) == (inbound.find_invalid_x_mcp_header(schema) is not None)
    if hm is not None:
        assert {p: t for p, (t, _) in hm.items()} == inbound.x_mcp_header_map(schema)
    ours = ph.validate(hm, args, headers)
    theirs = _sdk(schema, args, headers)
    if ours is not None and _ASCII in ours:
        # Stricter than the SDK: a raw non-visible-ASCII value, which no conforming client
        # sends, is refused outright rather than compared in its latin-1 reading.
        return
    assert not isinstance(theirs, Exception)
    assert ours == theirs


_INT_SCHEMA = _schema(n={"type": "integer", "x-mcp-header": "N"})
_INT_MAP = ph.header_map(_INT_SCHEMA)
_numbers = st.one_of(
    st.integers(-(2**80), 2**80),
    st.integers(-(2**70), 2**70).map(float),
    st.floats(),
    st.booleans(),
    st.just(10**5000),
)


@st.composite
def _numeric_headers(draw: st.DrawFn, value: Any) -> bytes:
    exact = inbound._render_header_scalar(value) or "x"
    whole = exact.partition(".")[0].lstrip("-")
    if not (whole.isascii() and whole.isdigit()):
        whole = "1"
    sign = draw(st.sampled_from(["", "-", "+"]))
    digits = draw(st.sampled_from([whole, "0" + whole, str(int(whole) + 1), "1e3"]))
    fraction = draw(st.sampled_from(["", ".0", ".00", ".5", ".05", ".", "e0"]))
    return draw(st.sampled_from([exact, sign + digits + fraction])).encode()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_differential_integer_comparison(data: st.DataObject) -> None:
    value = data.draw(_numbers)
    header = data.draw(_numeric_headers(value))
    args, headers = {"n": value}, [(b"mcp-param-n", header)]
    assert ph.validate(_INT_MAP, args, headers) == _sdk(_INT_SCHEMA, args, headers)


def _retail(data: bytes, last: str) -> str:
    """The sentinel for ``data`` with its last base64 character replaced."""
    payload = base64.b64encode(data).decode()
    body = payload.rstrip("=")
    return f"=?base64?{body[:-1]}{last}{payload[len(body) :]}?="


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.from_regex(r"=\?base64\?[A-Za-z0-9+/=!_ -]{0,12}\?=", fullmatch=True),
        st.text(max_size=8).map(_b64),
        # Valid alphabet and padding, but possibly non-zero trailing bits.
        st.builds(_retail, st.binary(min_size=1, max_size=6), st.sampled_from("AQgw/+9z")),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    )
)
def test_differential_sentinel_decoding(value: str) -> None:
    assert ph.decode_header_value(value) == inbound.decode_header_value(value)
