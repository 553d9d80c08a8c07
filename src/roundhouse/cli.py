"""The ``roundhouse`` command: run a gateway (``up``) and steer a running one through its API.

Every command but ``up`` talks to a gateway through :class:`roundhouse.client.RemoteClient`;
none touches a process or the registry itself. Arguments are checked before any request, and an
expected error (no gateway, no such server, a rejected spec) is one red line on stderr and exit
status 1; usage errors exit 2, as click does.

Heavy imports (httpx, rich, pydantic, the gateway itself) happen inside the commands, so that
``roundhouse --help`` answers at once.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from roundhouse.errors import InvalidInput, RoundhouseError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from roundhouse.client import RemoteClient

__all__ = ["app", "main"]

app = typer.Typer(
    name="roundhouse",
    help="Roundhouse: a gateway and supervisor for MCP servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_STATE_STYLES = {
    "running": "green",
    "healthy": "green",
    "starting": "cyan",
    "pending": "cyan",
    "degraded": "yellow",
    "stopping": "yellow",
    "backoff": "yellow",
    "unhealthy": "red",
    "failed": "bold red",
    "stopped": "dim",
    "unknown": "dim",
}

#: stderr lines of a troubled instance that ``show`` prints.
SHOW_STDERR_LINES = 10


# -- output ------------------------------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = 1) -> NoReturn:
    from rich.markup import escape

    _console(stderr=True).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _describe(exc: RoundhouseError) -> str:
    field = getattr(exc, "field", None)
    if isinstance(exc, InvalidInput) and field and field not in exc.message:
        return f"{exc.message} (field: {field})"
    return exc.message


def _styled(value: str) -> str:
    style = _STATE_STYLES.get(value)
    return f"[{style}]{value}[/{style}]" if style else value


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def human_duration(seconds: float | None) -> str:
    """``42s``, ``3m12s``, ``2h05m``, ``3d04h``; ``-`` when there is none."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _transport_summary(transport: dict[str, Any]) -> str:
    kind = transport.get("type", "stdio")
    if kind == "http":
        return f"http {transport.get('url', '')}"
    command = shlex.join([transport.get("command", ""), *transport.get("args", [])])
    if kind == "local-http":
        paths = f"health {transport.get('health_path')}, mcp {transport.get('mcp_path')}"
        return f"local-http {command} ({paths})"
    return f"stdio {command}"


def _instance_table(*, with_server: bool) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    # On a narrow terminal the names fold onto a second line; the short columns never do.
    if with_server:
        table.add_column("SERVER", overflow="fold")
    table.add_column("INSTANCE", overflow="fold")
    for name in ("STATE", "HEALTH"):
        table.add_column(name, no_wrap=True)
    for name in ("PID", "PORT", "UPTIME", "RESTARTS"):
        table.add_column(name, justify="right", no_wrap=True)
    return table


def _instance_row(instance: dict[str, Any]) -> list[str]:
    return [
        str(instance.get("id", "-")),
        _styled(str(instance.get("state", "-"))),
        _styled(str(instance.get("health", "-"))),
        _dash(instance.get("pid")),
        _dash(instance.get("port")),
        human_duration(instance.get("uptime_seconds")),
        _dash(instance.get("restart_count")),
    ]


def _servers_table(servers: list[dict[str, Any]]) -> Table:
    table = _instance_table(with_server=True)
    for server in servers:
        instances = server.get("instances") or []
        if not instances:
            state, health = str(server.get("state", "-")), str(server.get("health", "-"))
            table.add_row(server["slug"], "-", _styled(state), _styled(health), *["-"] * 4)
        for instance in instances:
            table.add_row(server["slug"], *_instance_row(instance))
    return table


# -- arguments ---------------------------------------------------------------------------------


def _check_slug(value: str) -> str:
    from roundhouse.spec import SLUG_PATTERN

    if not re.fullmatch(SLUG_PATTERN, value):
        raise typer.BadParameter(
            f"{value!r} is not a slug: lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 40 characters"
        )
    return value


def _check_env(values: list[str] | None) -> list[str] | None:
    for item in values or []:
        name, sep, _ = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
    return values


def _check_headers(values: list[str] | None) -> list[str] | None:
    for item in values or []:
        name, sep, _ = item.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME:VALUE")
    return values


def _check_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


Slug = Annotated[
    str, typer.Argument(help="The server's slug.", callback=_check_slug, metavar="SLUG")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")]


# -- talking to a gateway ----------------------------------------------------------------------


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="ROUNDHOUSE_URL",
            help="The gateway's URL; by default the local gateway on Roundhouse's default port.",
            callback=_check_url,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Roundhouse: a gateway and supervisor for MCP servers."""
    ctx.obj = url


@contextmanager
def _gateway(ctx: typer.Context) -> Iterator[RemoteClient]:
    """A client for the gateway; an expected error ends the command with one red line."""
    from roundhouse.client import RemoteClient

    try:
        with RemoteClient(ctx.obj) as client:
            yield client
    except RoundhouseError as exc:
        _fail(_describe(exc))


# -- commands ----------------------------------------------------------------------------------


@app.command()
def up(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A YAML or JSON config file.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the registry and logs live.")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind [default: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=0, max=65535, help="Port to bind.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = None,
) -> None:
    """Run the gateway in the foreground until Ctrl-C."""
    from roundhouse.api.serve import run_gateway

    overrides = {"data_dir": data_dir, "host": host, "port": port, "log_level": log_level}
    raise typer.Exit(run_gateway(config, overrides))


@app.command(no_args_is_help=True)
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
            "--url", help="A remote MCP server's URL instead of a command.", callback=_check_url
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="NAME:VALUE sent to a remote server; repeatable.",
            callback=_check_headers,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="KEY=VALUE for the command's environment; repeatable.",
            callback=_check_env,
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
    with _gateway(ctx) as client:
        view = client.create_server(spec)
    summary = _transport_summary(view.get("spec", spec)["transport"])
    state = _styled(view.get("state", "-"))
    _console().print(f"[green]added[/green] {view['slug']}: {_escape(summary)} ({state})")


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


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command(no_args_is_help=True)
def rm(
    ctx: typer.Context,
    slug: Slug,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Stop a server and remove it from the registry."""
    if not yes:
        typer.confirm(f"Remove {slug} and stop its instances?", abort=True)
    with _gateway(ctx) as client:
        client.delete_server(slug)
    _console().print(f"[green]removed[/green] {slug}")


@app.command("ls")
def ls(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List servers, one row per instance."""
    with _gateway(ctx) as client:
        servers = client.list_servers()
    if as_json:
        _print_json(servers)
    elif not servers:
        typer.echo("no servers; add one with `roundhouse add SLUG -- COMMAND ARGS…`")
    else:
        _console().print(_servers_table(servers))


@app.command(no_args_is_help=True)
def show(ctx: typer.Context, slug: Slug, as_json: AsJson = False) -> None:
    """Show one server: its spec, state and instances."""
    with _gateway(ctx) as client:
        view = client.get_server(slug)
    if as_json:
        _print_json(view)
        return
    console = _console()
    spec = view.get("spec", {})
    title = f"[bold]{view['slug']}[/bold]"
    if view.get("name") and view["name"] != view["slug"]:
        title += f"  {_escape(view['name'])}"
    console.print(title)
    fields = [
        ("transport", _escape(_transport_summary(spec.get("transport", {})))),
        ("state", f"{_styled(view.get('state', '-'))}, health {_styled(view.get('health', '-'))}"),
        ("enabled", "yes" if view.get("enabled") else "no"),
        ("instances", f"{view.get('desired_instances', '-')} desired"),
        ("tags", _escape(", ".join(spec.get("tags", [])) or "-")),
        ("created", _dash(view.get("created_at"))),
        ("updated", _dash(view.get("updated_at"))),
    ]
    for label, value in fields:
        console.print(f"  {label:<10} {value}", soft_wrap=True)
    instances = view.get("instances") or []
    if instances:
        table = _instance_table(with_server=False)
        for instance in instances:
            table.add_row(*_instance_row(instance))
        console.print()
        console.print(table)
    for instance in instances:
        if not instance.get("last_error") and instance.get("state") not in ("failed", "backoff"):
            continue
        console.print(
            f"[bold]{instance['id']}[/bold]: exit code {_dash(instance.get('last_exit_code'))}, "
            f"{_escape(instance.get('last_error') or 'no error recorded')}",
            soft_wrap=True,
        )
        for line in (instance.get("stderr_tail") or [])[-SHOW_STDERR_LINES:]:
            console.print(f"  [dim]|[/dim] {_escape(line)}", soft_wrap=True)


def _steer(ctx: typer.Context, slug: str, verb: str) -> None:
    with _gateway(ctx) as client:
        view = getattr(client, verb)(slug)
    past = {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
    _console().print(f"[green]{past}[/green] {slug} ({_styled(view.get('state', '-'))})")


@app.command(no_args_is_help=True)
def start(ctx: typer.Context, slug: Slug) -> None:
    """Enable a server and start its instances."""
    _steer(ctx, slug, "start")


@app.command(no_args_is_help=True)
def stop(ctx: typer.Context, slug: Slug) -> None:
    """Stop a server's instances and keep them stopped."""
    _steer(ctx, slug, "stop")


@app.command(no_args_is_help=True)
def restart(ctx: typer.Context, slug: Slug) -> None:
    """Restart a server's instances (this also clears a failed state)."""
    _steer(ctx, slug, "restart")


# ignore_unknown_options: so that `scale web -1` says -1 is out of range, not "no such option".
@app.command(no_args_is_help=True, context_settings={"ignore_unknown_options": True})
def scale(
    ctx: typer.Context,
    slug: Slug,
    n: Annotated[int, typer.Argument(min=0, help="How many instances to run.", metavar="N")],
) -> None:
    """Run N instances of a server."""
    with _gateway(ctx) as client:
        view = client.scale(slug, n)
    _console().print(
        f"[green]scaled[/green] {slug} to {view.get('desired_instances', n)} "
        f"instance{'s' if n != 1 else ''} ({_styled(view.get('state', '-'))})"
    )


@app.command(no_args_is_help=True)
def logs(
    ctx: typer.Context,
    slug: Slug,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many past lines.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Print a server's stderr lines (all instances, oldest first)."""
    with _gateway(ctx) as client:
        if not follow:
            for line in client.logs(slug, lines):
                typer.echo(_log_text(line))
            return
        try:
            for line in client.follow_logs(slug, lines):
                typer.echo(_log_text(line))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _log_text(line: dict[str, Any]) -> str:
    ts = line.get("ts")
    when = (
        time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else "--:--:--"
    )
    return f"{when} {line.get('instance') or '-'} | {line.get('line', '')}"


@app.command("import", no_args_is_help=True)
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="A YAML or JSON config, or a Claude Desktop mcpServers file.", metavar="FILE"
        ),
    ],
) -> None:
    """Register every server a config file names (read here, sent to the gateway)."""
    from roundhouse.config import load_config
    from roundhouse.spec import spec_to_storage

    try:
        config = load_config(file)
    except RoundhouseError as exc:
        _fail(_describe(exc))
    except OSError as exc:
        _fail(f"{file}: {exc.strerror or exc}")
    if not config.servers:
        _fail(f"{file} names no servers")
    with _gateway(ctx) as client:
        imported = client.import_servers([spec_to_storage(spec) for spec in config.servers])
    _console().print(f"[green]imported[/green] {len(imported)}: {', '.join(imported)}")


@app.command()
def health(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The gateway's status and its servers by health."""
    with _gateway(ctx) as client:
        gateway = client.gateway()
        servers = client.health()
    if as_json:
        _print_json(servers)
        return
    console = _console()
    status = "healthy" if gateway.get("status") == "ok" else "unhealthy"
    uptime = human_duration(gateway.get("uptime_seconds"))
    console.print(
        f"gateway {client.url}: {_styled(status)}, "
        f"version {gateway.get('version', '?')}, up {uptime}"
    )
    avg = servers.get("avg_response_time_ms")
    console.print(
        f"servers: {servers.get('total_servers', 0)} total, "
        f"{_styled('healthy')} {servers.get('healthy_servers', 0)}, "
        f"{_styled('degraded')} {servers.get('degraded_servers', 0)}, "
        f"{_styled('unhealthy')} {servers.get('unhealthy_servers', 0)}; "
        f"avg response {'-' if avg is None else f'{avg:.1f} ms'}"
    )


def main() -> None:
    app()
