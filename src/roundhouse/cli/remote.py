"""The gateway a command talks to: the root ``--url`` option, and a client for that URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from roundhouse.cli.args import check_url
from roundhouse.cli.render import describe, fail
from roundhouse.errors import RoundhouseError

if TYPE_CHECKING:
    from roundhouse.client import RemoteClient

__all__ = ["gateway", "root"]


def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="ROUNDHOUSE_URL",
            help="The gateway's URL; by default the local gateway on Roundhouse's default port.",
            callback=check_url,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Roundhouse: a gateway and supervisor for MCP servers."""
    ctx.obj = url


@contextmanager
def gateway(ctx: typer.Context) -> Iterator[RemoteClient]:
    """A client for the gateway; an expected error ends the command with one red line."""
    from roundhouse.client import RemoteClient

    try:
        with RemoteClient(ctx.obj) as client:
            yield client
    except RoundhouseError as exc:
        fail(describe(exc))
