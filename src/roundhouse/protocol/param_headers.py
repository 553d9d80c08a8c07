"""``x-mcp-header`` / ``Mcp-Param-*`` validation for 2026-07-28 ``tools/call`` requests.

A tool's ``inputSchema`` may mark properties with ``"x-mcp-header": TOKEN``; a client mirrors each
such argument into an ``Mcp-Param-TOKEN`` HTTP header, and a server -- or a gateway in front of
one -- must check that header and body agree. Any failure is answered with HTTP 400 and JSON-RPC
error -32020 (HeaderMismatch); that mapping is the caller's job, this module only decides.

Pure and stdlib-only (the gateway does not import the SDK). It ports the behaviour of the SDK's
``mcp/shared/inbound.py`` (``find_invalid_x_mcp_header``, ``x_mcp_header_map``,
``validate_mcp_param_headers`` and helpers):

- ``header_map(schema)`` runs once per tool when the catalog is refreshed. It walks every JSON
  Schema 2020-12 schema position (never following ``$ref`` or entering instance data such as
  ``default``/``const``). An annotation is valid only on a property reachable from the root by a
  chain of plain ``properties`` keys, with an RFC 9110 token as its value, on an
  ``integer``/``string``/``boolean`` property, and case-insensitively unique. If any annotation
  is invalid the result is ``None`` and nothing is validated (conforming clients drop such a tool
  and send no headers), exactly like the SDK.
- ``validate(map, arguments, raw_headers)`` runs per ``tools/call`` of an annotated tool. Header
  and argument must be present together (``null`` counts as absent) and equal after decoding the
  ``=?base64?...?=`` sentinel; an integer-typed property compares numerically (``42`` matches
  ``42.0``, also beyond the float-safe range). A duplicated ``Mcp-Param-*`` header is rejected.
  Beyond the SDK: the raw value, after trimming optional whitespace, must be visible ASCII
  (``\\x20``-``\\x7e``) -- a conforming client base64-wraps anything else -- and a malformed
  sentinel (bad padding, non-alphabet characters, non-canonical or non-UTF-8 payload) is rejected,
  as the conformance scenario ``http-custom-header-server-validation`` requires.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final, TypeAlias

__all__ = [
    "MCP_PARAM_HEADER_PREFIX",
    "X_MCP_HEADER_KEY",
    "HeaderMap",
    "decode_header_value",
    "encode_header_value",
    "header_map",
    "param_headers",
    "validate",
]

X_MCP_HEADER_KEY: Final = "x-mcp-header"
MCP_PARAM_HEADER_PREFIX: Final = "Mcp-Param-"
_PREFIX_LOWER: Final = b"mcp-param-"
_PREFIX_LEN: Final = len(_PREFIX_LOWER)

HeaderMap: TypeAlias = dict[tuple[str, ...], tuple[str, dict[str, Any]]]
"""Annotated property path (chain of ``properties`` keys) -> (token, the property's schema)."""

# Fullmatch semantics throughout: ``.`` never matches a newline, so a value with one never
# counts as a sentinel (same as the SDK's ``^...$`` patterns under ``fullmatch``).
_B64_SENTINEL: Final = re.compile(r"=\?base64\?(.*)\?=")
_HEADER_SAFE: Final = re.compile(r"[\x20-\x7E]*")
_RFC9110_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CANONICAL_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_PRIMITIVE_TYPES: Final = frozenset({"string", "integer", "boolean"})

# JSON Schema 2020-12 applicators whose values are schema positions. Only ``properties`` keeps
# the statically-reachable chain; crossing any of these drops it (path becomes None).
_SUBSCHEMA_SINGLE: Final = frozenset(
    {
        "items",
        "contains",
        "unevaluatedItems",
        "additionalProperties",
        "propertyNames",
        "unevaluatedProperties",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
    }
)
_SUBSCHEMA_LIST: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAP: Final = frozenset({"patternProperties", "dependentSchemas", "$defs", "definitions"})


# -- value codec -----------------------------------------------------------------------------


def encode_header_value(value: str) -> str:
    """Wrap ``value`` in the ``=?base64?...?=`` sentinel unless it survives an HTTP field as is.

    Visible ASCII without edge whitespace that does not itself look like the sentinel passes
    verbatim; anything else is base64 (UTF-8) wrapped.
    """
    if (
        _HEADER_SAFE.fullmatch(value)
        and value == value.strip()
        and not _B64_SENTINEL.fullmatch(value)
    ):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def decode_header_value(value: str) -> str | None:
    """Inverse of :func:`encode_header_value`; ``None`` for a malformed sentinel.

    A value without the complete ``=?base64?`` ... ``?=`` wrapper is literal. Inside it, the
    payload must be canonical, padded, standard-alphabet base64 of UTF-8 text.
    """
    m = _B64_SENTINEL.fullmatch(value)
    if m is None:
        return value
    payload = m.group(1)
    try:
        decoded = base64.b64decode(payload, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text in the payload
        return None
    # validate=True tolerates non-zero trailing bits; the encoder only emits canonical form.
    if base64.b64encode(decoded).decode("ascii") != payload:
        return None
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None


# -- schema ----------------------------------------------------------------------------------


def _walk(root: Any) -> Iterator[tuple[tuple[str, ...] | None, dict[str, Any]]]:
    """Yield ``(properties_path, schema)`` for every schema position, in the SDK's order."""
    stack: list[tuple[tuple[str, ...] | None, Any]] = [((), root)]
    pop = stack.pop
    push = stack.append
    while stack:
        path, node = pop()
        if not isinstance(node, dict):
            continue
        yield path, node
        for kw, val in node.items():
            if kw == "properties" and isinstance(val, dict):
                for name, sub in val.items():
                    push(((*path, name) if path is not None else None, sub))
            elif kw in _SUBSCHEMA_SINGLE:
                push((None, val))
            elif kw in _SUBSCHEMA_LIST and isinstance(val, list):
                stack.extend((None, sub) for sub in val)
            elif kw in _SUBSCHEMA_MAP and isinstance(val, dict):
                stack.extend((None, sub) for sub in val.values())


def header_map(input_schema: Any) -> HeaderMap | None:
    """The ``x-mcp-header`` annotations of a tool's ``inputSchema``, or ``None`` if any is invalid.

    Keys are property paths from the root (``("region",)``, ``("target", "zone")``); values are
    ``(token, property_schema)``. An empty dict means "nothing to validate", as does ``None``.
    Compute once per tool and reuse.
    """
    found: HeaderMap = {}
    seen: set[str] = set()
    for path, schema in _walk(input_schema):
        if X_MCP_HEADER_KEY not in schema:
            continue
        if not path:  # off the pure-properties chain (None) or the root itself (())
            return None
        token = schema[X_MCP_HEADER_KEY]
        if not isinstance(token, str) or not _RFC9110_TOKEN.fullmatch(token):
            return None
        prop_type = schema.get("type")
        if not isinstance(prop_type, str) or prop_type not in _PRIMITIVE_TYPES:
            return None
        lower = token.lower()
        if lower in seen:
            return None
        seen.add(lower)
        found[path] = (token, schema)
    return found


# -- request ---------------------------------------------------------------------------------


def _render(value: Any) -> str | None:
    """The client's header rendering of an argument, or ``None`` when it has none."""
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if not isinstance(value, str | int | float):
        return None
    try:
        return str(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return None


def _value_at(arguments: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = arguments
    for key in path:
        if type(node) is not dict and not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _matches(prop_type: Any, value: Any, rendered: str, decoded: str) -> bool:
    """Header agrees with argument: numerically for integer properties, else textually."""
    if decoded == rendered:  # also true under the numeric rule whenever it applies
        return True
    if (
        prop_type == "integer"
        and not isinstance(value, bool)
        and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
        and _CANONICAL_DECIMAL.fullmatch(decoded) is not None
    ):
        whole, _, fraction = decoded.partition(".")
        if fraction.strip("0"):
            return False
        try:
            return int(whole) == int(value)
        except ValueError:  # too many digits to parse
            return False
    return False


@lru_cache(maxsize=4096)
def _header_names(token: str) -> tuple[str, bytes]:
    return f"{MCP_PARAM_HEADER_PREFIX}{token}", (_PREFIX_LOWER + token.lower().encode("ascii"))


def validate(
    header_map: Mapping[tuple[str, ...], tuple[str, Mapping[str, Any]]] | None,
    arguments: Mapping[str, Any],
    headers: Sequence[tuple[bytes, bytes]],
) -> str | None:
    """Check a ``tools/call``'s ``Mcp-Param-*`` headers against its arguments.

    ``header_map`` is :func:`header_map`'s result; ``headers`` are the raw ASGI pairs (so
    duplicates are visible). Returns ``None`` when they agree, else the first failure's message;
    the caller answers HTTP 400 with JSON-RPC error -32020. ``Mcp-Param-*`` headers no
    annotation declares are ignored.
    """
    if not header_map:
        return None
    received: dict[bytes, bytes] = {}
    duplicated: set[bytes] = set()
    for name, raw in headers:
        if name.startswith(_PREFIX_LOWER):  # ASGI names are already lowercase
            key = name
        elif name[:_PREFIX_LEN].lower() == _PREFIX_LOWER:
            key = name.lower()
        else:
            continue
        if key in received:
            duplicated.add(key)
        received[key] = raw
    for path, (token, schema) in header_map.items():
        header_name, key = _header_names(token)
        raw_value = received.get(key)
        value = _value_at(arguments, path)
        if raw_value is not None and key in duplicated:
            return f"{header_name} header appears more than once"
        if value is None:
            if raw_value is not None:
                return (
                    f"{header_name} header is present but the request body's "
                    f"{'.'.join(path)!r} argument is absent"
                )
            continue
        rendered = _render(value)
        if rendered is None:
            # No header rendering exists, so a conforming client sent none; one that did can
            # never match.
            if raw_value is not None:
                return (
                    f"{header_name} header does not match the request body's "
                    f"{'.'.join(path)!r} argument"
                )
            continue
        if raw_value is None:
            return (
                f"{header_name} header is missing but the request body's "
                f"{'.'.join(path)!r} argument is present"
            )
        text = raw_value.strip(b" \t").decode("latin-1")
        if not (text.isascii() and text.isprintable()):
            return f"{header_name} header value has characters outside visible ASCII"
        decoded = decode_header_value(text)
        if decoded is None:
            return f"{header_name} header carries a malformed base64 sentinel value"
        if not _matches(schema.get("type"), value, rendered, decoded):
            return (
                f"{header_name} header does not match the request body's "
                f"{'.'.join(path)!r} argument"
            )
    return None


def param_headers(
    header_map: Mapping[tuple[str, ...], tuple[str, Mapping[str, Any]]] | None,
    arguments: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """The ``Mcp-Param-*`` headers a client mirrors from ``arguments`` (for calls the gateway
    originates towards a 2026-07-28 upstream). Absent, ``null`` or unrenderable values are
    omitted; the rest are rendered and passed through :func:`encode_header_value`."""
    out: list[tuple[str, str]] = []
    for path, (token, _) in (header_map or {}).items():
        value = _value_at(arguments, path)
        if value is None or (rendered := _render(value)) is None:
            continue
        out.append((f"{MCP_PARAM_HEADER_PREFIX}{token}", encode_header_value(rendered)))
    return out
