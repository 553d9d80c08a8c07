"""Pydantic's validation errors as one :class:`ConfigFileError` at the line of the first problem.

A ``where`` function maps a model's error location back onto the key path the user wrote, since
the model's shape and the file's need not match (``mcpServers`` entries are flat).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, get_args

from pydantic import ValidationError

from roundhouse.config.lines import Document, Loc, dotted
from roundhouse.errors import ConfigFileError
from roundhouse.spec import HttpTransport, LocalHttpTransport, ServerSpec, StdioTransport

__all__ = ["Where", "message", "validate_spec", "validation_error"]

Where = Callable[[Loc], Loc]

_MAX_EXTRA_PROBLEMS = 4
# Pydantic puts the discriminator of the transport union into error locations; users never wrote it.
_TRANSPORT_TAGS = frozenset(
    str(tag)
    for model in (StdioTransport, LocalHttpTransport, HttpTransport)
    for tag in get_args(model.model_fields["type"].annotation)
)


def validate_spec(doc: Document, body: dict[str, Any], where: Where) -> ServerSpec:
    try:
        return ServerSpec.model_validate(body)
    except ValidationError as exc:
        raise validation_error(doc, exc, body, where) from None


def validation_error(
    doc: Document, exc: ValidationError, given: dict[str, Any], where: Where
) -> ConfigFileError:
    """One error for all of a model's problems, at the line of the first in the file."""
    problems: list[tuple[int, Loc, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = _without_tags(tuple(error["loc"]))
        if not loc:
            # A model-level check (port_range order): point at the field its message names.
            named = [key for key in given if re.search(rf"\b{re.escape(key)}\b", error["msg"])]
            loc = tuple(named[:1])
        doc_loc = where(loc)
        problems.append((doc.line(doc_loc) or 0, doc_loc, message(error)))
    problems.sort(key=lambda problem: (problem[0] == 0, problem[0]))  # unknown lines last
    (line, loc, first), *rest = problems
    text = f"{dotted(loc)}: {first}"
    for other_line, other_loc, other in rest[:_MAX_EXTRA_PROBLEMS]:
        text += f"; line {other_line}: {dotted(other_loc)}: {other}"
    if len(rest) > _MAX_EXTRA_PROBLEMS:
        text += f"; and {len(rest) - _MAX_EXTRA_PROBLEMS} more"
    return ConfigFileError(doc.name, text, line=line or None)


def _without_tags(loc: tuple[Any, ...]) -> Loc:
    kept = [
        part
        for i, part in enumerate(loc)
        if not (part in _TRANSPORT_TAGS and i > 0 and loc[i - 1] == "transport")
    ]
    return tuple(part if isinstance(part, int) else str(part) for part in kept)


def message(error: Any) -> str:
    """One pydantic error's message, in the file's terms."""
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "string_pattern_mismatch" and error["loc"][-1:] == ("slug",):
        return "not a valid slug (lowercase letters, digits and '-', at most 40 characters)"
    return str(error["msg"]).removeprefix("Value error, ")
