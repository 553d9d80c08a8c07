"""Commands on one server, or on the list of them: add, rm, ls, show, start/stop/restart, scale,
logs. Each sends its request through :func:`~roundhouse.cli.remote.gateway`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from roundhouse.cli.args import AsJson, Slug, build_spec, check_env, check_headers, check_url
from roundhouse.cli.remote import gateway
from roundhouse.cli.render import (
    console,
    dash,
    escape,
    instance_row,
    instance_table,
    log_text,
    print_json,
    servers_table,
    styled,
    transport_summary,
)

__all__ = [
    "SHOW_STDERR_LINES",
    "add",
    "logs",
    "ls",
    "restart",
    "rm",
    "scale",
    "show",
    "start",
    "stop",
]

#: stderr lines of a troubled instance that ``show`` prints.
SHOW_STDERR_LINES = 10


def add(
    ctx: typer.Context,
    slug: Slug,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="The command and its arguments, after `--`.",
            show_default=False,
            metavar="COMMAND",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="A remote MCP server's URL instead of a command.", callback=check_url
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="NAME:VALUE sent to a remote server; repeatable.",
            callback=check_headers,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="KEY=VALUE for the command's environment; repeatable.",
            callback=check_env,
        ),
    ] = None,
    cwd: Annotated[
        str | None, typer.Option("--cwd", help="The command's working directory.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A display name.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag; repeatable.")] = None,
    instances: Annotated[
        int | None, typer.Option("--instances", "-n", min=0, help="How many copies to run.")
    ] = None,
    local_http: Annotated[
        bool,
        typer.Option("--local-http", help="The command is an HTTP server; put {port} in its args."),
    ] = False,
    health_path: Annotated[
        str | None, typer.Option("--health-path", help="local-http: path answering health checks.")
    ] = None,
    mcp_path: Annotated[
        str | None, typer.Option("--mcp-path", help="local-http: path of the MCP endpoint.")
    ] = None,
) -> None:
    """Register a server: `add SLUG -- COMMAND ARGS…` or `add SLUG --url URL`."""
    spec = build_spec(
        slug,
        command=command or [],
        url=url,
        headers=header or [],
        env=env or [],
        cwd=cwd,
        name=name,
        tags=tag or [],
        instances=instances,
        local_http=local_http,
        health_path=health_path,
        mcp_path=mcp_path,
    )
    with gateway(ctx) as client:
        view = client.create_server(spec)
    summary = transport_summary(view.get("spec", spec)["transport"])
    state = styled(view.get("state", "-"))
    console().print(f"[green]added[/green] {view['slug']}: {escape(summary)} ({state})")


def rm(
    ctx: typer.Context,
    slug: Slug,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Stop a server and remove it from the registry."""
    if not yes:
        typer.confirm(f"Remove {slug} and stop its instances?", abort=True)
    with gateway(ctx) as client:
        client.delete_server(slug)
    console().print(f"[green]removed[/green] {slug}")


def ls(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List servers, one row per instance."""
    with gateway(ctx) as client:
        servers = client.list_servers()
    if as_json:
        print_json(servers)
    elif not servers:
        typer.echo("no servers; add one with `roundhouse add SLUG -- COMMAND ARGS…`")
    else:
        console().print(servers_table(servers))


def show(ctx: typer.Context, slug: Slug, as_json: AsJson = False) -> None:
    """Show one server: its spec, state and instances."""
    with gateway(ctx) as client:
        view = client.get_server(slug)
    if as_json:
        print_json(view)
        return
    out = console()
    spec = view.get("spec", {})
    title = f"[bold]{view['slug']}[/bold]"
    if view.get("name") and view["name"] != view["slug"]:
        title += f"  {escape(view['name'])}"
    out.print(title)
    fields = [
        ("transport", escape(transport_summary(spec.get("transport", {})))),
        ("state", f"{styled(view.get('state', '-'))}, health {styled(view.get('health', '-'))}"),
        ("enabled", "yes" if view.get("enabled") else "no"),
        ("instances", f"{view.get('desired_instances', '-')} desired"),
        ("tags", escape(", ".join(spec.get("tags", [])) or "-")),
        ("created", dash(view.get("created_at"))),
        ("updated", dash(view.get("updated_at"))),
    ]
    for label, value in fields:
        out.print(f"  {label:<10} {value}", soft_wrap=True)
    instances = view.get("instances") or []
    if instances:
        table = instance_table(with_server=False)
        for instance in instances:
            table.add_row(*instance_row(instance))
        out.print()
        out.print(table)
    for instance in instances:
        if not instance.get("last_error") and instance.get("state") not in ("failed", "backoff"):
            continue
        out.print(
            f"[bold]{instance['id']}[/bold]: exit code {dash(instance.get('last_exit_code'))}, "
            f"{escape(instance.get('last_error') or 'no error recorded')}",
            soft_wrap=True,
        )
        for line in (instance.get("stderr_tail") or [])[-SHOW_STDERR_LINES:]:
            out.print(f"  [dim]|[/dim] {escape(line)}", soft_wrap=True)


def _steer(ctx: typer.Context, slug: str, verb: str) -> None:
    with gateway(ctx) as client:
        view = getattr(client, verb)(slug)
    past = {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
    console().print(f"[green]{past}[/green] {slug} ({styled(view.get('state', '-'))})")


def start(ctx: typer.Context, slug: Slug) -> None:
    """Enable a server and start its instances."""
    _steer(ctx, slug, "start")


def stop(ctx: typer.Context, slug: Slug) -> None:
    """Stop a server's instances and keep them stopped."""
    _steer(ctx, slug, "stop")


def restart(ctx: typer.Context, slug: Slug) -> None:
    """Restart a server's instances (this also clears a failed state)."""
    _steer(ctx, slug, "restart")


def scale(
    ctx: typer.Context,
    slug: Slug,
    n: Annotated[int, typer.Argument(min=0, help="How many instances to run.", metavar="N")],
) -> None:
    """Run N instances of a server."""
    with gateway(ctx) as client:
        view = client.scale(slug, n)
    console().print(
        f"[green]scaled[/green] {slug} to {view.get('desired_instances', n)} "
        f"instance{'s' if n != 1 else ''} ({styled(view.get('state', '-'))})"
    )


def logs(
    ctx: typer.Context,
    slug: Slug,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many past lines.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Print a server's stderr lines (all instances, oldest first)."""
    with gateway(ctx) as client:
        if not follow:
            for line in client.logs(slug, lines):
                typer.echo(log_text(line))
            return
        try:
            for line in client.follow_logs(slug, lines):
                typer.echo(log_text(line))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
