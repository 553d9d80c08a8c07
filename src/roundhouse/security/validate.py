"""Input checks for tool arguments: sanitized strings, bounded JSON, no prototype-pollution keys.

Pure: no I/O. Every check raises :class:`~roundhouse.errors.InvalidInput` naming the field and
the rule it broke, never echoing the value (a 10 MB title must not come back in the error).

    sanitize_string      control characters and null bytes stripped, then the length checked
    check_structure      depth <= 10, <= 100 keys per object, <= 1,000 items per array,
                         no ``__proto__``/``constructor``/``prototype`` key at any depth
    parse_object         an object, or a JSON string of one (some clients send strings)

Depth counts containers: ``{}`` is depth 1, ``{"a": {}}`` depth 2; scalars add nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from roundhouse.errors import InvalidInput

__all__ = [
    "DANGEROUS_KEYS",
    "MAX_ARRAY_ITEMS",
    "MAX_DEPTH",
    "MAX_JSON_STRING_CHARS",
    "MAX_OBJECT_KEYS",
    "check_structure",
    "parse_object",
    "sanitize_string",
    "strip_control",
]

MAX_DEPTH: Final = 10
MAX_OBJECT_KEYS: Final = 100
MAX_ARRAY_ITEMS: Final = 1000
#: A JSON string standing for an object is refused unparsed above this many characters.
MAX_JSON_STRING_CHARS: Final = 1 << 20
#: Keys that mean something to a JavaScript object's prototype chain (and Python's dunders):
#: a downstream consumer merging our data must never receive them.
DANGEROUS_KEYS: Final = frozenset(
    {"__proto__", "constructor", "prototype", "__class__", "__dict__", "__globals__"}
)

# C0 controls but tab, line feed and carriage return; DEL; C1 controls. NUL is among them.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Tab and line breaks (Unicode's line and paragraph separators too): spaces in one-line fields.
_BREAKS: Final = re.compile(r"[\t\n\r\u2028\u2029]")


def strip_control(text: str, *, multiline: bool = True) -> str:
    """``text`` without control characters; one-line text loses tabs and line breaks too,
    which become spaces so the words they separated stay apart."""
    if not multiline:
        text = _BREAKS.sub(" ", text)
    return _CONTROL.sub("", text)


def sanitize_string(
    value: Any,
    *,
    field: str,
    max_length: int,
    min_length: int = 0,
    multiline: bool = False,
) -> str:
    """A clean string within ``min_length..max_length`` characters *after* cleaning.

    One-line strings are also stripped of surrounding whitespace, so a title of blanks is empty.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, not {_type_name(value)}", field=field)
    # Cleaning cannot make a string longer, and control characters are rare: refuse what is
    # hopelessly long before spending time on it.
    if len(value) > 4 * max_length + 1024:
        raise InvalidInput(
            f"{field} is too long: {len(value):,} characters, at most {max_length:,}", field=field
        )
    clean = strip_control(value, multiline=multiline)
    if not multiline:
        clean = clean.strip()
    if len(clean) > max_length:
        raise InvalidInput(
            f"{field} is too long: {len(clean):,} characters, at most {max_length:,}", field=field
        )
    if len(clean) < min_length:
        if min_length == 1:
            raise InvalidInput(f"{field} must not be empty", field=field)
        raise InvalidInput(f"{field} must have at least {min_length} characters", field=field)
    return clean


def check_structure(
    value: Any,
    *,
    field: str = "arguments",
    max_depth: int = MAX_DEPTH,
    max_keys: int = MAX_OBJECT_KEYS,
    max_items: int = MAX_ARRAY_ITEMS,
) -> None:
    """Raise InvalidInput when ``value`` is nested too deep, too wide, or holds a dangerous key.

    Iterative, so a hostile nesting costs no Python stack; it stops at the first violation.
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, field)]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, Mapping):
            _check_depth(depth, max_depth, field)
            if len(node) > max_keys:
                raise InvalidInput(
                    f"{where} has {len(node):,} keys, at most {max_keys} are allowed", field=field
                )
            for key, child in node.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"{where} has a key that is not a string", field=field)
                if key in DANGEROUS_KEYS:
                    raise InvalidInput(f"{where} holds the forbidden key {key!r}", field=field)
                if isinstance(child, Mapping | list | tuple):
                    stack.append((child, depth + 1, f"{where}.{_short(key)}"))
        elif isinstance(node, list | tuple):
            _check_depth(depth, max_depth, field)
            if len(node) > max_items:
                raise InvalidInput(
                    f"{where} has {len(node):,} items, at most {max_items:,} are allowed",
                    field=field,
                )
            for index, child in enumerate(node):
                if isinstance(child, Mapping | list | tuple):
                    stack.append((child, depth + 1, f"{where}[{index}]"))


def parse_object(value: Any, *, field: str) -> dict[str, Any]:
    """An object parameter given as an object or as a JSON string of one, checked for structure.

    The JSON string is parsed only after its length is checked; what it holds gets the same
    :func:`check_structure` as any object.
    """
    if isinstance(value, str):
        if len(value) > MAX_JSON_STRING_CHARS:
            raise InvalidInput(
                f"{field} is too long: {len(value):,} characters of JSON,"
                f" at most {MAX_JSON_STRING_CHARS:,}",
                field=field,
            )
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidInput(
                f"{field} must be an object or a JSON string of one; the string is not JSON",
                field=field,
            ) from None
        if not isinstance(value, dict):
            raise InvalidInput(
                f"{field} must be an object or a JSON string of one;"
                f" the string holds {_type_name(value)}",
                field=field,
            )
    elif not isinstance(value, dict):
        raise InvalidInput(
            f"{field} must be an object or a JSON string of one, not {_type_name(value)}",
            field=field,
        )
    check_structure(value, field=field)
    return value


def _check_depth(depth: int, max_depth: int, field: str) -> None:
    if depth > max_depth:
        raise InvalidInput(f"{field} is nested deeper than {max_depth} levels", field=field)


def _short(key: str) -> str:
    """A key as it may appear in an error: printable and short."""
    clean = strip_control(key, multiline=False)
    return clean if len(clean) <= 40 else clean[:37] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
