"""Where a key path is in the file: the parsed data with its YAML node tree, to name lines.

A location (:data:`Loc`) is a key path such as ``("servers", "github", "transport")``; the line
is found by walking the node tree, and JSON is composed as YAML only when a line is wanted.
"""

from __future__ import annotations

import contextlib
from typing import Any

import yaml

from roundhouse.errors import ConfigFileError

__all__ = ["Document", "Loader", "Loc", "compose", "dotted"]

Loc = tuple[str | int, ...]


class Loader(yaml.SafeLoader):
    """The safe loader, with a value it cannot build (``2024-13-45``) reported at its line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(None, None, str(exc), node.start_mark) from None


def compose(text: str) -> yaml.Node | None:
    loader = Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class Document:
    """The parsed data and its YAML node tree, to find the line of a key path."""

    def __init__(self, name: str, data: Any, root: yaml.Node | None, json_text: str = "") -> None:
        self.name, self.data = name, data
        self._root, self._json_text = root, json_text

    @property
    def root(self) -> yaml.Node | None:
        # JSON is (nearly) YAML: compose it only when a line is wanted. Tabs are the usual
        # obstacle and are only whitespace in valid JSON, so spaces keep every line number.
        if self._root is None and self._json_text:
            text, self._json_text = self._json_text.replace("\t", " "), ""
            with contextlib.suppress(yaml.YAMLError, RecursionError):
                self._root = compose(text)
        return self._root

    def line(self, loc: Loc) -> int | None:
        """The line of the deepest key of ``loc`` found in the file (1-based)."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            found = _child(node, part)
            if found is None:
                break
            key, node = found
            line = key.start_mark.line + 1
        return line

    def error(self, loc: Loc, message: str) -> ConfigFileError:
        return ConfigFileError(self.name, f"{dotted(loc)}: {message}", line=self.line(loc))


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        # The last match wins, as in the data (merged keys come before the mapping's own).
        for key, value in reversed(node.value):
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def dotted(loc: Loc) -> str:
    """``servers.github.transport``, ``servers[0].slug``: a location as users write it."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
