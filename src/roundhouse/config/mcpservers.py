"""The ``mcpServers`` section, as Claude Desktop, Cursor, Cline and Roo write it.

Each entry is flat (``command``, ``args``, ``env``, ``cwd``, or ``url`` and ``headers``) and named
by a display name; it becomes a :class:`ServerSpec` whose slug is made from that name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from roundhouse.config.lines import Document, Loc
from roundhouse.config.validation import Where, validate_spec
from roundhouse.spec import ServerSpec, slug_from_name

__all__ = ["mcp_section"]

# ``sse`` is the legacy HTTP+SSE transport; ``http`` would find it too, but saying so skips the
# Streamable HTTP attempt.
_MCP_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "sse": "sse"}
# Client-side approval lists (Cline, Roo): meaningful to the client only.
_MCP_IGNORED = frozenset({"autoApprove", "alwaysAllow"})
_TRANSPORT_KEYS = frozenset({"command", "args", "env", "cwd", "url", "headers"})
_MCP_KEYS = _TRANSPORT_KEYS | {"type", "transport", "disabled", *_MCP_IGNORED}


def mcp_section(doc: Document, section: Any) -> Iterator[tuple[ServerSpec, Loc, str]]:
    """Each entry's spec, where it is, and how to name it in an error."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise doc.error(("mcpServers",), "must be a mapping of name to server")
    for name, entry in section.items():
        loc: Loc = ("mcpServers", str(name))
        if not isinstance(entry, dict):
            raise doc.error(loc, "a server must be a mapping")
        body = _from_mcp_entry(doc, loc, str(name), entry)
        yield validate_spec(doc, body, _mcp_where(loc)), loc, f"mcpServers {str(name)!r}"


def _from_mcp_entry(doc: Document, loc: Loc, name: str, entry: dict[Any, Any]) -> dict[str, Any]:
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
            if (_MCP_TYPES[said] == "stdio") != (kind == "stdio"):
                what = "a url" if kind != "stdio" else "a command"
                raise doc.error((*loc, key), f"says {said!r} but the server has {what}")
            kind = _MCP_TYPES[said]
    # A field of the other kind (args next to a url) is left for the spec to reject.
    transport = {"type": kind}
    transport.update((k, v) for k, v in entry.items() if k in _TRANSPORT_KEYS and v is not None)
    body: dict[str, Any] = {"slug": slug_from_name(name), "name": name, "transport": transport}
    if "disabled" in entry:
        if not isinstance(entry["disabled"], bool):
            raise doc.error((*loc, "disabled"), "must be true or false")
        body["enabled"] = not entry["disabled"]
    return body


def _mcp_where(loc: Loc) -> Where:
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
