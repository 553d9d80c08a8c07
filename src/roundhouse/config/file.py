"""What a config file says: its ``settings`` and ``servers`` sections, checked together.

:func:`load_config` reads the file (:mod:`~roundhouse.config.reading`), checks the top level,
validates each section and refuses two servers with one slug; :func:`settings_from_file` puts the
file's settings under the environment's and the command line's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    SecretsSettingsSource,
)

from roundhouse.config.lines import Document, Loc, dotted
from roundhouse.config.mcpservers import mcp_section
from roundhouse.config.reading import parse, read_text
from roundhouse.config.validation import Where, message, validate_spec, validation_error
from roundhouse.errors import ConfigFileError, InvalidInput
from roundhouse.settings import Settings
from roundhouse.spec import ServerSpec

__all__ = ["ConfigFile", "load_config", "settings_from_file"]

_TOP_KEYS = frozenset({"settings", "servers", "mcpServers"})

Entry = tuple[ServerSpec, Loc, str]


@dataclass(frozen=True)
class ConfigFile:
    """What a config file says: values for :class:`Settings` fields, and server specs."""

    settings: dict[str, Any] = field(default_factory=dict)
    servers: list[ServerSpec] = field(default_factory=list)


def load_config(path: Path) -> ConfigFile:
    """Read and validate a config file; raise :class:`ConfigFileError` naming the line."""
    doc = parse(path, read_text(path))
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
    entries: list[Entry] = [
        *_servers_section(doc, data.get("servers")),
        *mcp_section(doc, data.get("mcpServers")),
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
        where = dotted(tuple(first["loc"])) or "settings"
        raise InvalidInput(f"invalid settings: {where}: {message(first)}", field=where) from None


def _settings_section(doc: Document, section: Any) -> dict[str, Any]:
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
        raise validation_error(doc, exc, values, lambda loc: ("settings", *loc)) from None
    return values


def _servers_section(doc: Document, section: Any) -> Iterator[Entry]:
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
        yield validate_spec(doc, body, where), loc, dotted(loc)


def _under(loc: Loc, *, slug_at_key: bool = False) -> Where:
    def where(spec_loc: Loc) -> Loc:
        return loc if slug_at_key and spec_loc[:1] == ("slug",) else (*loc, *spec_loc)

    return where
