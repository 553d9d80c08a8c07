"""From a path to a :class:`~roundhouse.config.lines.Document`, treating the file as untrusted.

The size is capped, the text must be UTF-8, JSON or YAML is told by extension or first
character, and YAML is refused unsafe tags, duplicate keys and alias expansion beyond
:data:`MAX_ALIAS_NODES` before any data is built from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from roundhouse.config.lines import Document, Loader
from roundhouse.errors import ConfigFileError

__all__ = ["MAX_ALIAS_NODES", "MAX_CONFIG_BYTES", "parse", "read_text"]

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_ALIAS_NODES = 10_000

_YAML_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map", "merge")
)


def read_text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigFileError(str(path), f"larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        raise ConfigFileError(str(path), message, line=line) from None
    if not text.strip():
        raise ConfigFileError(str(path), "empty config file")
    return text


def parse(path: Path, text: str) -> Document:
    suffix = path.suffix.lower()
    is_json = suffix == ".json" or (
        suffix not in (".yaml", ".yml") and text.lstrip().startswith("{")
    )
    return _parse_json(str(path), text) if is_json else _parse_yaml(str(path), text)


def _parse_json(name: str, text: str) -> Document:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (column {exc.colno})"
        raise ConfigFileError(name, message, line=exc.lineno) from None
    except RecursionError:
        raise ConfigFileError(name, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise ConfigFileError(name, f"invalid JSON: {exc}") from None
    doc = Document(name, data, None, json_text=text)
    if duplicates:
        if doc.root is not None:
            _check_nodes(name, doc.root)  # raises, naming the line of the second key
        raise ConfigFileError(name, f"duplicate key {duplicates[0]!r}")
    return doc


def _parse_yaml(name: str, text: str) -> Document:
    try:
        loader = Loader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise ConfigFileError(name, "empty config file")
            _check_nodes(name, root)
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark is not None else None
        raise ConfigFileError(name, f"invalid YAML: {problem}", line=line) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigFileError(name, f"invalid YAML: {exc.reason}", line=line) from None
    except RecursionError:
        raise ConfigFileError(name, "invalid YAML: nested too deeply") from None
    return Document(name, data, root)


def _check_nodes(name: str, root: yaml.Node) -> None:
    """Refuse unsafe tags, duplicate keys, and alias expansion beyond the cap.

    Walks the tree as a consumer would, through aliases, without recursion: a node met again
    was reached through an alias, and each such visit counts against the cap (so do cycles).
    """
    seen: set[int] = set()
    repeats = 0
    stack = [root]
    while stack:
        node = stack.pop()
        line = node.start_mark.line + 1
        if id(node) in seen:
            repeats += 1
            if repeats > MAX_ALIAS_NODES:
                message = f"aliases expand to more than {MAX_ALIAS_NODES} extra nodes"
                raise ConfigFileError(name, message, line=line)
        else:
            seen.add(id(node))
            _check_node(name, node, line)
        if isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _check_node(name: str, node: yaml.Node, line: int) -> None:
    if node.tag not in _YAML_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise ConfigFileError(name, f"the YAML tag {tag} is not allowed", line=line)
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and not key.tag.endswith(":merge"):
                here = key.start_mark.line + 1
                if (key.tag, key.value) in first_line:
                    message = f"duplicate key {key.value!r} (first at line "
                    message += f"{first_line[key.tag, key.value]})"
                    raise ConfigFileError(name, message, line=here)
                first_line[key.tag, key.value] = here
