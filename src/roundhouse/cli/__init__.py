"""The ``roundhouse`` command: run a gateway (``up``) and steer a running one through its API.

Every command but ``up`` talks to a gateway through :class:`roundhouse.client.RemoteClient`;
none touches a process or the registry itself. Arguments are checked before any request, and an
expected error (no gateway, no such server, a rejected spec) is one red line on stderr and exit
status 1; usage errors exit 2, as click does.

Heavy imports (httpx, rich, pydantic, the gateway itself) happen inside the commands, so that
``roundhouse --help`` answers at once.

The commands live in :mod:`~roundhouse.cli.servers` (one server, or the list) and
:mod:`~roundhouse.cli.gateway` (the gateway as a whole); they are registered here, in the order
``--help`` lists them.
"""

from __future__ import annotations

import typer

from roundhouse.cli.args import build_spec
from roundhouse.cli.bindery import bindery_app
from roundhouse.cli.gateway import health, import_, up
from roundhouse.cli.remote import root
from roundhouse.cli.render import human_duration
from roundhouse.cli.servers import add, logs, ls, restart, rm, scale, show, start, stop
from roundhouse.cli.stdio import stdio

__all__ = ["app", "build_spec", "human_duration", "main"]

app = typer.Typer(
    name="roundhouse",
    help="Roundhouse: a gateway and supervisor for MCP servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.callback()(root)
app.command()(up)
app.command()(stdio)
app.command(no_args_is_help=True)(add)
app.command(no_args_is_help=True)(rm)
app.command("ls")(ls)
app.command(no_args_is_help=True)(show)
app.command(no_args_is_help=True)(start)
app.command(no_args_is_help=True)(stop)
app.command(no_args_is_help=True)(restart)
# ignore_unknown_options: so that `scale web -1` says -1 is out of range, not "no such option".
app.command(no_args_is_help=True, context_settings={"ignore_unknown_options": True})(scale)
app.command(no_args_is_help=True)(logs)
app.command("import", no_args_is_help=True)(import_)
app.command()(health)
app.add_typer(bindery_app, name="bindery")


def main() -> None:
    app()
