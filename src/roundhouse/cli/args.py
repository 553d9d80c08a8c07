"""Checking arguments before any request, and turning ``add``'s options into a server spec.

A bad argument is a usage error (:class:`typer.BadParameter`, exit status 2), as click does.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

__all__ = ["AsJson", "Slug", "build_spec", "check_env", "check_headers", "check_slug", "check_url"]


def check_slug(value: str) -> str:
    from roundhouse.spec import SLUG_PATTERN

    if not re.fullmatch(SLUG_PATTERN, value):
        raise typer.BadParameter(
            f"{value!r} is not a slug: lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 40 characters"
        )
    return value


def check_env(values: list[str] | None) -> list[str] | None:
    for item in values or []:
        name, sep, _ = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
    return values


def check_headers(values: list[str] | None) -> list[str] | None:
    for item in values or []:
        name, sep, _ = item.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME:VALUE")
    return values


def check_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


Slug = Annotated[
    str, typer.Argument(help="The server's slug.", callback=check_slug, metavar="SLUG")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")]


def build_spec(
    slug: str,
    *,
    command: list[str],
    url: str | None,
    headers: list[str],
    env: list[str],
    cwd: str | None,
    name: str | None,
    tags: list[str],
    instances: int | None,
    local_http: bool,
    health_path: str | None,
    mcp_path: str | None,
) -> dict[str, Any]:
    """The spec ``add`` sends; raises a usage error for options that do not go together."""
    if bool(command) == bool(url):
        raise typer.BadParameter(
            "give either a command after `--` or --url, not both or neither",
            param_hint="'COMMAND' / '--url'",
        )
    transport: dict[str, Any]
    if url is not None:
        misplaced = [
            flag
            for flag, given in (("--env", env), ("--cwd", cwd), ("--local-http", local_http))
            if given
        ]
        if misplaced:
            raise typer.BadParameter(
                f"{', '.join(misplaced)} only go with a command, not --url", param_hint="'--url'"
            )
        transport = {"type": "http", "url": url, "headers": _pairs(headers, ":")}
    else:
        if headers:
            raise typer.BadParameter("--header only goes with --url", param_hint="'--header'")
        if not local_http and (health_path or mcp_path):
            raise typer.BadParameter(
                "--health-path and --mcp-path only go with --local-http",
                param_hint="'--health-path' / '--mcp-path'",
            )
        transport = {
            "type": "local-http" if local_http else "stdio",
            "command": command[0],
            "args": command[1:],
            "env": _pairs(env, "="),
            "cwd": cwd,
        }
        if health_path is not None:
            transport["health_path"] = health_path
        if mcp_path is not None:
            transport["mcp_path"] = mcp_path
    spec: dict[str, Any] = {"slug": slug, "transport": transport}
    if name is not None:
        spec["name"] = name
    if tags:
        spec["tags"] = tags
    if instances is not None:
        spec["instances"] = instances
    return spec


def _pairs(items: list[str], sep: str) -> dict[str, str]:
    pairs = (item.partition(sep) for item in items)
    return {key.strip(): value.strip() if sep == ":" else value for key, _, value in pairs}
