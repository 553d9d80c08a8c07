"""Tool parameters: one declaration gives both the JSON Schema a client sees and the check the
face runs, so the two cannot drift apart.

A :class:`Param` parses one argument into a clean value or raises
:class:`~roundhouse.errors.InvalidInput` naming it. Strings go through
:func:`~roundhouse.security.validate.sanitize_string`; object parameters accept an object or a
JSON string of one (:func:`~roundhouse.security.validate.parse_object`) and check their own
fields the same way; :func:`parse_arguments` checks the whole ``arguments`` object first
(depth, width, forbidden keys) and refuses names it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from roundhouse.errors import InvalidInput
from roundhouse.security.validate import (
    check_structure,
    parse_object,
    sanitize_string,
    strip_control,
)

__all__ = ["Param", "params_schema", "parse_arguments"]

Kind = Literal["line", "text", "id", "int", "bool", "choice", "tags", "object"]

#: Tags: how many a task may have, and how long each may be (docs/BINDERY.md).
MAX_TAGS = 20
MAX_TAG_LENGTH = 50


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of a tool.

    ``line`` is one-line text, ``text`` may span lines; ``id`` is an integer >= 1 (``nullable``
    lets null through: "no parent"); ``int`` is bounded by ``minimum``/``maximum``; ``choice``
    is one of ``choices``; ``tags`` a list of short strings, returned sorted and unique;
    ``object`` holds ``fields`` and may arrive as a JSON string.
    """

    name: str
    kind: Kind
    description: str
    required: bool = False
    min_length: int = 0
    max_length: int = 0
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    fields: tuple[Param, ...] = field(default=())

    def schema(self) -> dict[str, Any]:
        schema = self._base_schema()
        schema["description"] = self.description
        return schema

    def _base_schema(self) -> dict[str, Any]:
        kind = self.kind
        if kind in ("line", "text"):
            return {"type": "string", "minLength": self.min_length, "maxLength": self.max_length}
        if kind in ("id", "int"):
            schema: dict[str, Any] = {"type": ["integer", "null"] if self.nullable else "integer"}
            if kind == "id":
                schema["minimum"] = 1
            if self.minimum is not None:
                schema["minimum"] = self.minimum
            if self.maximum is not None:
                schema["maximum"] = self.maximum
            return schema
        if kind == "bool":
            return {"type": "boolean"}
        if kind == "choice":
            return {"type": "string", "enum": list(self.choices)}
        if kind == "tags":
            return {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH},
                "maxItems": MAX_TAGS,
            }
        return {
            "anyOf": [
                params_schema(self.fields, strict=True),
                {"type": "string", "description": "the same object as a JSON string"},
            ]
        }

    def parse(self, value: Any, *, where: str = "") -> Any:
        """The clean value of this argument, or InvalidInput."""
        name = f"{where}{self.name}"
        kind = self.kind
        if value is None and self.nullable:
            return None
        if kind in ("line", "text"):
            return sanitize_string(
                value,
                field=name,
                min_length=self.min_length,
                max_length=self.max_length,
                multiline=kind == "text",
            )
        if kind in ("id", "int"):
            return self._integer(value, name)
        if kind == "bool":
            if not isinstance(value, bool):
                raise InvalidInput(f"{name} must be true or false", field=name)
            return value
        if kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise InvalidInput(f"{name} must be one of {', '.join(self.choices)}", field=name)
            return value
        if kind == "tags":
            return _tags(value, name)
        return parse_arguments(self.fields, parse_object(value, field=name), where=f"{name}.")

    def _integer(self, value: Any, name: str) -> int:
        # A float with no fraction is an integer that went through a JSON library; a bool is not.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            null = " or null" if self.nullable else ""
            raise InvalidInput(f"{name} must be an integer{null}", field=name)
        low = 1 if self.kind == "id" else self.minimum
        if low is not None and value < low:
            raise InvalidInput(f"{name} must be at least {low}", field=name)
        if self.maximum is not None and value > self.maximum:
            raise InvalidInput(f"{name} must be at most {self.maximum}", field=name)
        return value


def params_schema(params: Sequence[Param], *, strict: bool = True) -> dict[str, Any]:
    """The JSON Schema of an object holding ``params``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: p.schema() for p in params},
        "additionalProperties": not strict,
    }
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    return schema


def parse_arguments(
    params: Sequence[Param], arguments: Mapping[str, Any] | None, *, where: str = ""
) -> dict[str, Any]:
    """The clean arguments: each known one parsed, unknown ones and missing required ones
    refused. Arguments left out stay out (the backend applies its defaults)."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        raise InvalidInput("arguments must be an object")
    if not where:
        check_structure(arguments)
    known = {p.name: p for p in params}
    for name in arguments:
        if name not in known:
            expected = ", ".join(known) or "none"
            raise InvalidInput(
                f"unknown argument {where}{_printable(name)!s} (expected: {expected})",
                field=f"{where}{name}",
            )
    clean: dict[str, Any] = {}
    for param in params:
        if param.name in arguments:
            clean[param.name] = param.parse(arguments[param.name], where=where)
        elif param.required:
            raise InvalidInput(f"{where}{param.name} is required", field=f"{where}{param.name}")
    return clean


def _tags(value: Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"{name} must be an array of strings", field=name)
    if len(value) > MAX_TAGS:
        raise InvalidInput(f"{name} has {len(value)} tags, at most {MAX_TAGS}", field=name)
    tags = {
        sanitize_string(tag, field=f"{name}[{i}]", min_length=1, max_length=MAX_TAG_LENGTH)
        for i, tag in enumerate(value)
    }
    return sorted(tags)


def _printable(name: str) -> str:
    clean = strip_control(name, multiline=False)
    return repr(clean if len(clean) <= 40 else clean[:37] + "...")
