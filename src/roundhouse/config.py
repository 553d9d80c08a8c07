"""Reading a config file: settings and server specs, with every error naming its line.

A config file is YAML or JSON (``.json``, or any other extension whose text starts with ``{``)
with up to three top-level keys::

    settings:    {port: 8090, port_range: 8100-8200}        # values for Settings fields
    servers:     {github: {transport: {command: npx}}}      # slug -> spec, or a list of specs
    mcpServers:  {"GitHub": {"command": "npx", "args": []}} # Claude Desktop / Cursor style

A file whose only Roundhouse key is ``mcpServers`` is read as a client's config: its other
top-level keys (``globalShortcut``, ``preferences`` …) belong to the client and are ignored.
Otherwise an unknown key is an error, as everywhere else.

The file is untrusted input. It may be at most :data:`MAX_CONFIG_BYTES`; YAML is read with the
safe loader and only the plain YAML tags; aliases (and ``<<`` merge keys) are allowed, but
expanding them may add at most :data:`MAX_ALIAS_NODES` nodes, so a billion-laughs document fails
fast instead of being expanded by whoever walks the data next. Error messages name fields, never
values, since values may be secrets.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    SecretsSettingsSource,
)

from roundhouse.errors import ConfigFileError, InvalidInput
from roundhouse.settings import Settings
from roundhouse.spec import (
    HttpTransport,
    LocalHttpTransport,
    ServerSpec,
    StdioTransport,
    slug_from_name,
)

__all__ = ["MAX_ALIAS_NODES", "MAX_CONFIG_BYTES", "ConfigFile", "load_config", "settings_from_file"]

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_ALIAS_NODES = 10_000
_MAX_EXTRA_PROBLEMS = 4

Loc = tuple[str | int, ...]

_YAML_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map", "merge")
)
_TOP_KEYS = frozenset({"settings", "servers", "mcpServers"})
# Pydantic puts the discriminator of the transport union into error locations; users never wrote it.
_TRANSPORT_TAGS = frozenset(
    str(model.model_fields["type"].default)
    for model in (StdioTransport, LocalHttpTransport, HttpTransport)
)
_MCP_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "sse": "http"}
# Client-side approval lists (Cline, Roo): meaningful to the client only.
_MCP_IGNORED = frozenset({"autoApprove", "alwaysAllow"})
_TRANSPORT_KEYS = frozenset({"command", "args", "env", "cwd", "url", "headers"})
_MCP_KEYS = _TRANSPORT_KEYS | {"type", "transport", "disabled", *_MCP_IGNORED}


@dataclass(frozen=True)
class ConfigFile:
    """What a config file says: values for :class:`Settings` fields, and server specs."""

    settings: dict[str, Any] = field(default_factory=dict)
    servers: list[ServerSpec] = field(default_factory=list)


def load_config(path: Path) -> ConfigFile:
    """Read and validate a config file; raise :class:`ConfigFileError` naming the line."""
    doc = _parse(path, _read_text(path))
    data = doc.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ConfigFileError(doc.name, f"the top level must be a mapping, not {kind}", line=1)
    client_file = "mcpServers" in data and not ({"settings", "servers"} & data.keys())
    if not client_file:
        for key in data:
            if key not in _TOP_KEYS:
                raise doc.error(
                    (str(key),), "unknown top-level key; expected settings, servers or mcpServers"
                )
    settings = _settings_section(doc, data.get("settings"))
    entries = [
        *_servers_section(doc, data.get("servers")),
        *_mcp_section(doc, data.get("mcpServers")),
    ]
    seen: dict[str, tuple[str, Loc]] = {}
    for spec, loc, label in entries:
        if spec.slug in seen:
            first_label, first_loc = seen[spec.slug]
            raise ConfigFileError(
                doc.name,
                f"{label} and {first_label} (line {doc.line(first_loc)}) both map to slug "
                f"{spec.slug!r}",
                line=doc.line(loc),
            )
        seen[spec.slug] = (label, loc)
    return ConfigFile(settings=settings, servers=[spec for spec, _, _ in entries])


def settings_from_file(config: ConfigFile, **overrides: Any) -> Settings:
    """Settings with precedence overrides > environment > the file's ``settings`` > defaults.

    Overrides whose value is None (a flag not given) are ignored. The file's values become the
    lowest-priority source after whatever sources :class:`Settings` itself declares.
    """
    explicit = {name: value for name, value in overrides.items() if value is not None}
    declared = Settings.settings_customise_sources(
        Settings,
        init_settings=InitSettingsSource(Settings, init_kwargs=explicit),
        env_settings=EnvSettingsSource(Settings),
        dotenv_settings=DotEnvSettingsSource(Settings),
        file_secret_settings=SecretsSettingsSource(Settings),
    )
    sources = (*declared, InitSettingsSource(Settings, init_kwargs=dict(config.settings)))
    try:
        return Settings(_build_sources=(sources, explicit))
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = _dotted(tuple(first["loc"])) or "settings"
        raise InvalidInput(f"invalid settings: {where}: {_message(first)}", field=where) from None


# -- reading and parsing -------------------------------------------------------------------------


def _read_text(path: Path) -> str:
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


class _Document:
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
                self._root = _compose(text)
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
        return ConfigFileError(self.name, f"{_dotted(loc)}: {message}", line=self.line(loc))


def _parse(path: Path, text: str) -> _Document:
    suffix = path.suffix.lower()
    is_json = suffix == ".json" or (
        suffix not in (".yaml", ".yml") and text.lstrip().startswith("{")
    )
    return _parse_json(str(path), text) if is_json else _parse_yaml(str(path), text)


def _parse_json(name: str, text: str) -> _Document:
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
    doc = _Document(name, data, None, json_text=text)
    if duplicates:
        if doc.root is not None:
            _check_nodes(name, doc.root)  # raises, naming the line of the second key
        raise ConfigFileError(name, f"duplicate key {duplicates[0]!r}")
    return doc


class _Loader(yaml.SafeLoader):
    """The safe loader, with a value it cannot build (``2024-13-45``) reported at its line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(None, None, str(exc), node.start_mark) from None


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _parse_yaml(name: str, text: str) -> _Document:
    try:
        loader = _Loader(text)
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
    return _Document(name, data, root)


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


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        # The last match wins, as in the data (merged keys come before the mapping's own).
        for key, value in reversed(node.value):
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


# -- sections ------------------------------------------------------------------------------------


def _settings_section(doc: _Document, section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise doc.error(("settings",), "must be a mapping")
    values = {str(key): value for key, value in section.items()}
    # Only the file's own values: Settings() would read the environment too.
    sources = (InitSettingsSource(Settings, init_kwargs=values),)
    try:
        Settings(_build_sources=(sources, values))
    except ValidationError as exc:
        raise _validation_error(doc, exc, values, lambda loc: ("settings", *loc)) from None
    return values


Entry = tuple[ServerSpec, Loc, str]


def _servers_section(doc: _Document, section: Any) -> Iterator[Entry]:
    if section is None:
        return
    if isinstance(section, dict):
        items: list[tuple[Loc, Any]] = [
            (("servers", str(key)), body) for key, body in section.items()
        ]
    elif isinstance(section, list):
        items = [(("servers", index), body) for index, body in enumerate(section)]
    else:
        raise doc.error(("servers",), "must be a mapping of slug to server, or a list of servers")
    for loc, body in items:
        if not isinstance(body, dict):
            raise doc.error(loc, "a server must be a mapping")
        where = _under(loc)
        if isinstance(section, dict):
            slug = loc[-1]
            if body.get("slug", slug) != slug:
                raise doc.error((*loc, "slug"), "differs from the key it is listed under")
            body = {**body, "slug": slug}
            where = _under(loc, slug_at_key=True)
        yield _validate_spec(doc, body, where), loc, _dotted(loc)


def _mcp_section(doc: _Document, section: Any) -> Iterator[Entry]:
    if section is None:
        return
    if not isinstance(section, dict):
        raise doc.error(("mcpServers",), "must be a mapping of name to server")
    for name, entry in section.items():
        loc: Loc = ("mcpServers", str(name))
        if not isinstance(entry, dict):
            raise doc.error(loc, "a server must be a mapping")
        body = _from_mcp_entry(doc, loc, str(name), entry)
        yield _validate_spec(doc, body, _mcp_where(loc)), loc, f"mcpServers {str(name)!r}"


def _from_mcp_entry(doc: _Document, loc: Loc, name: str, entry: dict[Any, Any]) -> dict[str, Any]:
    for key in entry:
        if key not in _MCP_KEYS:
            raise doc.error(
                (*loc, str(key)),
                "unknown field; a server has command, args, env and cwd, or url and headers",
            )
    kind = "http" if "url" in entry else "stdio"
    if "url" in entry and "command" in entry:
        raise doc.error(loc, "has both a command and a url; give one")
    if "url" not in entry and "command" not in entry:
        raise doc.error(loc, "needs a command (stdio) or a url (http)")
    for key in ("type", "transport"):
        if key in entry:
            said = entry[key]
            if not isinstance(said, str) or said not in _MCP_TYPES:
                raise doc.error(
                    (*loc, key), f"unknown transport; expected one of {list(_MCP_TYPES)}"
                )
            if _MCP_TYPES[said] != kind:
                what = "a url" if kind == "http" else "a command"
                raise doc.error((*loc, key), f"says {said!r} but the server has {what}")
    # A field of the other kind (args next to a url) is left for the spec to reject.
    transport = {"type": kind}
    transport.update((k, v) for k, v in entry.items() if k in _TRANSPORT_KEYS and v is not None)
    body: dict[str, Any] = {"slug": slug_from_name(name), "name": name, "transport": transport}
    if "disabled" in entry:
        if not isinstance(entry["disabled"], bool):
            raise doc.error((*loc, "disabled"), "must be true or false")
        body["enabled"] = not entry["disabled"]
    return body


def _under(loc: Loc, *, slug_at_key: bool = False) -> Callable[[Loc], Loc]:
    def where(spec_loc: Loc) -> Loc:
        return loc if slug_at_key and spec_loc[:1] == ("slug",) else (*loc, *spec_loc)

    return where


def _mcp_where(loc: Loc) -> Callable[[Loc], Loc]:
    """Map a ServerSpec error location back onto the flat mcpServers entry."""

    def where(spec_loc: Loc) -> Loc:
        head, rest = spec_loc[:1], spec_loc[1:]
        if head in (("slug",), ("name",)):
            return loc
        if head == ("transport",):
            return (*loc, *rest) if rest[:1] != ("type",) else loc
        if head == ("enabled",):
            return (*loc, "disabled")
        return (*loc, *spec_loc)

    return where


# -- validation errors ---------------------------------------------------------------------------


def _validate_spec(doc: _Document, body: dict[str, Any], where: Callable[[Loc], Loc]) -> ServerSpec:
    try:
        return ServerSpec.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(doc, exc, body, where) from None


def _validation_error(
    doc: _Document, exc: ValidationError, given: dict[str, Any], where: Callable[[Loc], Loc]
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
        problems.append((doc.line(doc_loc) or 0, doc_loc, _message(error)))
    problems.sort(key=lambda problem: (problem[0] == 0, problem[0]))  # unknown lines last
    (line, loc, message), *rest = problems
    text = f"{_dotted(loc)}: {message}"
    for other_line, other_loc, other in rest[:_MAX_EXTRA_PROBLEMS]:
        text += f"; line {other_line}: {_dotted(other_loc)}: {other}"
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


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "string_pattern_mismatch" and error["loc"][-1:] == ("slug",):
        return "not a valid slug (lowercase letters, digits and '-', at most 40 characters)"
    return str(error["msg"]).removeprefix("Value error, ")


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
