"""The catalog: what the aggregate endpoint (``/mcp``) offers, and which server owns each name.

Servers hand in their lists as they returned them (plain dicts from orjson); the catalog keeps
them, and whenever one server's lists change it rebuilds the merged, client-facing lists and the
reverse maps that route a call back: client name -> (slug, the server's own name) for tools and
prompts, uri -> slug for resources. Rebuilding is the only place that does work; resolving a name
is one dict lookup.

Naming, per server and kind:

1. entries without a usable key (``name``, ``uri``, ``uriTemplate``) and repeats are left out;
2. tools only: ``allow``/``deny`` patterns (``fnmatchcase``) on the server's own names, then
   ``rename``;
3. tools and prompts (each its own namespace) are named by the collision policy: ``prefix``
   (``slug + separator + name``), ``priority`` (plain; on a clash the highest priority keeps
   the plain name and the others are prefixed), ``error`` (plain; a clash leaves the name out for
   every server that offers it and is reported);
4. a name that is too long or has characters outside ``[A-Za-z0-9_.-]`` is cut and ends in
   ``_`` + 8 hex chars of the SHA-256 of the full name, so it is stable across rebuilds.

Resources keep their URIs (clients use them as they are); on a clash the higher priority server
serves the URI. Resource templates route every URI no exact resource claims.

Nothing here does I/O or imports ``mcp``; the upstream's dicts are never mutated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any, Final, Literal, TypeAlias

from roundhouse.errors import InvalidInput
from roundhouse.spec import ToolsSpec

__all__ = [
    "KINDS",
    "NAME_PATTERN",
    "Catalog",
    "CollisionPolicy",
    "Kind",
    "compile_uri_template",
]

Kind = Literal["tools", "prompts", "resources", "templates"]
CollisionPolicy = Literal["prefix", "priority", "error"]
KINDS: Final[tuple[Kind, ...]] = ("tools", "prompts", "resources", "templates")

#: What MCP asks of a tool name; every name the catalog offers matches it.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_INVALID_CHAR: Final = re.compile(r"[^A-Za-z0-9_.-]")
_SEPARATOR: Final = re.compile(r"[A-Za-z0-9_.-]{1,4}")
_HASH_CHARS: Final = 8
_KEY: Final[dict[Kind, str]] = {
    "tools": "name",
    "prompts": "name",
    "resources": "uri",
    "templates": "uriTemplate",
}
#: URIs longer than this are routed by exact match only. Template matching is linear (see
#: :func:`compile_uri_template`); the bound keeps one lookup under about 100 µs all the same.
MAX_TEMPLATE_URI: Final = 4096
#: Problems kept per server and kind, so a server listing 10,000 broken tools stays readable.
_MAX_PROBLEMS: Final = 20


#: (the server's own name, uri or uriTemplate; the name after rename; the entry as listed).
#: A plain tuple: there are tens of thousands of these per rebuild.
_Item: TypeAlias = tuple[str, str, dict[str, Any]]


@dataclass(slots=True)
class _Server:
    slug: str
    priority: int
    spec: ToolsSpec
    raw: dict[Kind, Any] = field(default_factory=dict)
    items: dict[Kind, list[_Item]] = field(default_factory=dict)
    problems: dict[Kind, list[str]] = field(default_factory=dict)

    @property
    def rank(self) -> tuple[int, str]:
        return (-self.priority, self.slug)


@dataclass(slots=True)
class _Built:
    entries: list[dict[str, Any]] = field(default_factory=list)
    routes: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    matcher: re.Pattern[str] | None = None
    matcher_owners: dict[str, str] = field(default_factory=dict)


class Catalog:
    """The merged lists of every server on the aggregate endpoint, and their routes back."""

    def __init__(
        self,
        *,
        separator: str = "__",
        collision: CollisionPolicy = "prefix",
        max_name_length: int = 64,
    ) -> None:
        if not _SEPARATOR.fullmatch(separator):
            raise InvalidInput(
                f"namespace separator {separator!r} must be 1-4 of [A-Za-z0-9_.-]",
                field="namespace_separator",
            )
        if collision not in ("prefix", "priority", "error"):
            raise InvalidInput(f"unknown collision policy {collision!r}", field="collision_policy")
        if not 16 <= max_name_length <= 128:
            raise InvalidInput("max_name_length must be 16-128", field="max_name_length")
        self.separator = separator
        self.collision: CollisionPolicy = collision
        self.max_name_length = max_name_length
        #: Bumps on every change of what clients see or where a name routes.
        self.version = 0
        self._servers: dict[str, _Server] = {}
        self._built: dict[Kind, _Built] = {kind: _Built() for kind in KINDS}

    # --- changes ------------------------------------------------------------------------------

    def set_server(
        self,
        slug: str,
        *,
        priority: int,
        tools_spec: ToolsSpec,
        tools: list[dict[str, Any]] | None = None,
        prompts: list[dict[str, Any]] | None = None,
        resources: list[dict[str, Any]] | None = None,
        templates: list[dict[str, Any]] | None = None,
    ) -> frozenset[Kind]:
        """Add or update one server; a list left as ``None`` stays as it was (empty if new).

        Returns the kinds whose client-facing list or routes changed (templates change with
        resources as far as ``notifications/resources/list_changed`` is concerned).
        """
        if not 0 <= priority <= 255:
            raise InvalidInput(f"priority {priority} is outside 0-255", field="priority")
        given: dict[Kind, Any] = {
            "tools": tools,
            "prompts": prompts,
            "resources": resources,
            "templates": templates,
        }
        server = self._servers.get(slug)
        dirty: set[Kind] = set()
        if server is None:
            server = self._servers[slug] = _Server(slug, priority, tools_spec)
            dirty.update(KINDS)
        if server.priority != priority:
            server.priority = priority
            dirty.update(KINDS)  # the winner of every clash may change
        if server.spec != tools_spec:
            server.spec = tools_spec
            server.items.pop("tools", None)
            dirty.add("tools")
        for kind, raw in given.items():
            # An unchanged list (the usual case on a re-list) costs one comparison, no rebuild.
            if raw is not None and (kind not in server.raw or raw != server.raw[kind]):
                server.raw[kind] = list(raw) if isinstance(raw, list) else raw
                server.items.pop(kind, None)
                dirty.add(kind)
        for kind in dirty:
            if kind not in server.items:
                self._prepare(server, kind)
        return self._rebuild(dirty)

    def remove_server(self, slug: str) -> frozenset[Kind]:
        """Withdraw everything a server offered (it stopped, or its upstream died)."""
        if self._servers.pop(slug, None) is None:
            return frozenset()
        return self._rebuild(set(KINDS))

    def has_server(self, slug: str) -> bool:
        """Whether ``slug``'s lists are in the catalog (offered or not)."""
        return slug in self._servers

    # --- what clients see ---------------------------------------------------------------------

    def tools(self) -> list[dict[str, Any]]:
        return self._copies("tools")

    def prompts(self) -> list[dict[str, Any]]:
        return self._copies("prompts")

    def resources(self) -> list[dict[str, Any]]:
        return self._copies("resources")

    def templates(self) -> list[dict[str, Any]]:
        return self._copies("templates")

    def conflicts(self) -> list[str]:
        """Human-readable problems: clashes, ignored renames, entries left out."""
        found: list[str] = []
        for slug in sorted(self._servers):
            for kind in KINDS:
                found.extend(self._servers[slug].problems.get(kind, ()))
        for kind in KINDS:
            found.extend(self._built[kind].problems)
        return found

    # --- routing ------------------------------------------------------------------------------

    def resolve_tool(self, name: str) -> tuple[str, str] | None:
        """Client name -> (slug, the server's own name), or None."""
        route: tuple[str, str] | None = self._built["tools"].routes.get(name)
        return route

    def resolve_prompt(self, name: str) -> tuple[str, str] | None:
        route: tuple[str, str] | None = self._built["prompts"].routes.get(name)
        return route

    def resolve_resource(self, uri: str) -> str | None:
        """The slug that serves ``uri``: an exact resource first, then templates by priority.

        A template's own text (``completion/complete`` with a ``ref/resource``) routes too.
        """
        slug: str | None = self._built["resources"].routes.get(uri)
        if slug is not None:
            return slug
        built = self._built["templates"]
        slug = built.routes.get(uri)
        if slug is not None or built.matcher is None or len(uri) > MAX_TEMPLATE_URI:
            return slug
        match = built.matcher.fullmatch(uri)
        if match is None or match.lastgroup is None:
            return None
        return built.matcher_owners[match.lastgroup]

    # --- building -----------------------------------------------------------------------------

    def _copies(self, kind: Kind) -> list[dict[str, Any]]:
        # One shallow copy per entry: a caller may reshape what it sends (era translation adds
        # or drops top-level keys) without touching the catalog. Nested values are shared and
        # read-only by contract; copying them deeply would cost more than the list itself.
        return [dict(entry) for entry in self._built[kind].entries]

    def _prepare(self, server: _Server, kind: Kind) -> None:
        """One server's usable entries of one kind, filtered and renamed (not yet merged)."""
        raw = server.raw.get(kind, [])
        key = _KEY[kind]
        problems: list[str] = []
        items: list[_Item] = []
        if not isinstance(raw, list):
            problems.append(f"{server.slug}: its {kind} list is not a list; nothing offered")
            raw = []
        offered = _pattern_test(server.spec.allow) if kind == "tools" else None
        denied = _pattern_test(server.spec.deny) if kind == "tools" else None
        seen: set[str] = set()
        unusable = 0
        repeated: list[str] = []
        for entry in raw:
            value = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(value, str) or not value:
                unusable += 1
                continue
            if value in seen:
                repeated.append(value)
                continue
            seen.add(value)
            if offered is not None and not offered(value):
                continue
            if denied is not None and denied(value):
                continue
            items.append((value, value, entry))
        if unusable:
            problems.append(f"{server.slug}: {unusable} {kind} without a usable {key} left out")
        if repeated:
            shown = ", ".join(repr(value) for value in repeated[:5])
            more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
            problems.append(f"{server.slug}: {kind} listed twice, the first kept: {shown}{more}")
        if kind == "tools" and server.spec.rename:
            items = _renamed(server.slug, items, server.spec.rename, problems)
        server.items[kind] = items
        server.problems[kind] = _capped(problems)

    def _rebuild(self, kinds: set[Kind]) -> frozenset[Kind]:
        ranked = sorted(self._servers.values(), key=lambda server: server.rank)
        changed: set[Kind] = set()
        for kind in kinds:
            if kind in ("tools", "prompts"):
                built = self._merge_named(kind, ranked)
            else:
                built = self._merge_uris(kind, ranked)
            old = self._built[kind]
            if built.entries != old.entries or built.routes != old.routes:
                changed.add(kind)
            self._built[kind] = built
        if changed:
            self.version += 1
        return frozenset(changed)

    def _merge_named(self, kind: Kind, ranked: list[_Server]) -> _Built:
        built = _Built()
        sep, policy, limit = self.separator, self.collision, self.max_name_length
        clashing: dict[str, list[str]] = {}
        if policy == "error":
            first_owner: dict[str, str] = {}
            for server in ranked:
                for _, local, _ in server.items[kind]:
                    owner = first_owner.setdefault(local, server.slug)
                    if owner != server.slug:
                        clashing.setdefault(local, [owner]).append(server.slug)
            for local, owners in clashing.items():
                built.problems.append(
                    f"{kind[:-1]} {local!r} is offered by {', '.join(sorted(owners))};"
                    " left out (collision policy 'error')"
                )
        # One pass in rank order (priority, then slug): under "priority" the first server to
        # offer a name keeps it plain, and on any later clash the earlier name wins.
        seen: set[str] = set()
        routes, entries, valid = built.routes, built.entries, NAME_PATTERN.fullmatch
        for server in ranked:
            slug = server.slug
            prefix = slug + sep
            for upstream, local, raw in server.items[kind]:
                if policy == "prefix":
                    name = prefix + local
                elif policy == "error":
                    if local in clashing:
                        continue
                    name = local
                elif local in seen:
                    name = prefix + local
                else:
                    seen.add(local)
                    name = local
                if len(name) > limit or not valid(name):
                    name = self._fit(name)
                if name in routes:
                    # Two different names met after cutting or prefixing (slug "a-b" + "c" and
                    # slug "a" + "b-c" with separator "-"): tell the later one by its origin.
                    other = self._fit(name, key=f"{slug}\x00{upstream}")
                    if other in routes:
                        built.problems.append(
                            f"{slug}: {kind[:-1]} {upstream!r} left out: its name {name!r} is taken"
                        )
                        continue
                    name = other
                routes[name] = (slug, upstream)
                entries.append({**raw, "name": name})
        built.problems = _capped(built.problems)
        return built

    def _merge_uris(self, kind: Kind, ranked: list[_Server]) -> _Built:
        built = _Built()
        owners = built.routes
        patterns: list[str] = []
        for server in ranked:
            for uri, _, raw in server.items[kind]:
                owner = owners.get(uri)
                if owner is not None:
                    built.problems.append(
                        f"{kind[:-1]} {uri!r} is offered by {owner} and {server.slug};"
                        f" {owner} serves it (higher priority)"
                    )
                    continue
                owners[uri] = server.slug
                built.entries.append(dict(raw))
                if kind == "templates":
                    pattern = compile_uri_template(uri)
                    if pattern is None:
                        built.problems.append(
                            f"{server.slug}: {uri!r} is not a URI template it can route by;"
                            " only the template text itself routes"
                        )
                        continue
                    group = f"t{len(patterns)}"
                    patterns.append(f"(?P<{group}>{pattern})")
                    built.matcher_owners[group] = server.slug
        if patterns:
            # One alternation in rank order: the first template that matches is the winner,
            # and the whole search runs in C.
            built.matcher = re.compile("|".join(patterns), re.DOTALL)
        built.problems = _capped(built.problems)
        return built

    def _fit(self, name: str, key: str | None = None) -> str:
        """``name`` as offered to clients: valid and short enough, or cut and hashed.

        The hash is of the full name (or of ``key``, to tell apart two names that met), so the
        same input always gives the same output.
        """
        limit = self.max_name_length
        if key is None and len(name) <= limit and NAME_PATTERN.fullmatch(name):
            return name
        source = name if key is None else key
        digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        head = _INVALID_CHAR.sub("_", name[: limit - _HASH_CHARS - 1])
        return f"{head}_{digest[:_HASH_CHARS]}"


def _pattern_test(patterns: list[str] | None) -> Callable[[str], object] | None:
    """A ``fullmatch``-like callable for shell patterns (case-sensitive), or None for "all"."""
    if patterns is None:
        return None
    if not patterns:
        return _nothing
    return re.compile("|".join(translate(pattern) for pattern in patterns)).match


def _nothing(name: str) -> bool:
    return False


def _renamed(
    slug: str, items: list[_Item], rename: dict[str, str], problems: list[str]
) -> list[_Item]:
    """Apply renames; one that would clash with another tool of the server is ignored."""
    taken = {upstream for upstream, _, _ in items if rename.get(upstream, upstream) == upstream}
    kept: list[_Item] = []
    for upstream, _, raw in items:
        local = rename.get(upstream, upstream)
        if local != upstream:
            if local in taken:
                problems.append(
                    f"{slug}: rename {upstream!r} -> {local!r} ignored: {local!r} is already a"
                    f" tool of {slug}"
                )
                local = upstream
                if local in taken:
                    # Its own name went to an earlier rename: nothing is left to call it.
                    problems.append(
                        f"{slug}: tool {local!r} left out: its name is taken by a rename"
                    )
                    continue
            taken.add(local)
        kept.append((upstream, local, raw))
    return kept


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= _MAX_PROBLEMS:
        return problems
    return [*problems[:_MAX_PROBLEMS], f"... and {len(problems) - _MAX_PROBLEMS} more"]


# --- URI templates (RFC 6570), as far as routing needs them ----------------------------------

_EXPRESSION: Final = re.compile(r"\{([^{}]*)\}")
_VARIABLE: Final = re.compile(r"[A-Za-z0-9_%.]+(?::[0-9]{1,4}|\*)?")
_OPERATORS: Final = "+#./;?&"
#: Operators whose values may hold "/" and run over anything after them. Everything else is
#: matched without backtracking (see below), so a template costs one pass over the URI whatever
#: a server sends; a crafted one cannot stall the event loop.
_SPANNING: Final = frozenset("+#?&")
#: Per operator: the regex for its values, given the character(s) they must not hold.
_VALUE_PATTERNS: Final[dict[str, str]] = {
    "": r"[^/?#{stop}]*",
    ".": r"(?:\.[^/?#.{stop}]*)*",
    "/": r"(?:/[^/?#{stop}]*)*",
    ";": r"(?:;[^/?#;{stop}]*)*",
    "+": r".*",
    "#": r"(?:#.*)?",
    "?": r"(?:\?[^#]*)?",
    "&": r"(?:&[^#]*)?",
}


def compile_uri_template(template: str) -> str | None:
    """A regex (without capturing groups) for the URIs ``template`` expands to, or None.

    Levels 1-3 and the level-4 modifiers (``:n``, ``*``) are accepted. Matching is loose, as
    routing needs nothing more: a value holds no ``/``, ``?`` or ``#`` unless its operator
    allows them, nor the first character of the literal after it; adjacent expressions
    (``{a}{/b}``) match as one run of what either may hold.
    """
    # Literal texts and runs of adjacent expressions' operators, in order.
    parts: list[str | list[str]] = []
    position = 0
    for match in _EXPRESSION.finditer(template):
        literal = template[position : match.start()]
        if "{" in literal or "}" in literal:
            return None
        if literal:
            parts.append(literal)
        position = match.end()
        body = match.group(1)
        operator = body[:1] if body[:1] in _OPERATORS else ""
        names = body[len(operator) :].split(",")
        if not all(_VARIABLE.fullmatch(name) for name in names):
            return None
        last = parts[-1] if parts else None
        if isinstance(last, list):
            last.append(operator)
        else:
            parts.append([operator])
    rest = template[position:]
    if "{" in rest or "}" in rest:
        return None
    if rest:
        parts.append(rest)
    out: list[str] = []
    for index, part in enumerate(parts):
        if isinstance(part, str):
            out.append(re.escape(part))
            continue
        following = parts[index + 1] if index + 1 < len(parts) else ""
        first = following[0] if isinstance(following, str) and following else ""
        spans = [i for i, operator in enumerate(part) if operator in _SPANNING]
        if spans:
            head, part = part[: spans[0]], part[spans[0] :]
            # Before "{+x}" a value adds nothing to what ".*" takes; before "{?x}" (which may
            # be empty) it stops at "?" and at what follows the run.
            if head and part[0] != "+":
                out.append(_run_pattern(head, re.escape(part[0]) + re.escape(first)))
            if any(isinstance(later, list) for later in parts[index + 1 :]):
                # Values after a spanning one would make the regex try every split of the URI
                # (quadratic): keep only the template's last literal, so "file:///{+dir}/{name}.txt"
                # still routes "*.txt" and nothing else.
                out.append(".*")
                if isinstance(parts[-1], str):
                    out.append(re.escape(parts[-1]))
                break
            out.append(_VALUE_PATTERNS[part[0]] if len(part) == 1 else ".*")
            continue
        out.append(_run_pattern(part, re.escape(first), first))
    return "".join(out)


def _run_pattern(operators: list[str], stop: str, first: str = "") -> str:
    """The regex for a run of adjacent non-spanning expressions, before ``first``."""
    if len(operators) == 1:
        pattern = _VALUE_PATTERNS[operators[0]].format(stop=stop)
    else:
        pattern = f"[^?#{stop}]*" if "/" in operators else f"[^/?#{stop}]*"
    # What follows cannot start inside these values, so giving characters back can never help:
    # a possessive match (no backtracking) finds the same URIs in one pass. A run like ``{.x}``
    # before a literal that starts with its own "." leaves that last "." to the literal (the
    # lookahead), and is possessive as well.
    if len(operators) == 1 and operators[0] and operators[0] in "./;" and first == operators[0]:
        pattern = pattern[:-2] + f"(?={stop}))*"
    return pattern + "+"
