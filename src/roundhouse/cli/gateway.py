"""Commands on the gateway as a whole: run it (``up``), feed it a config file (``import``), and
ask how it and its servers are (``health``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roundhouse.cli.args import AsJson
from roundhouse.cli.remote import gateway
from roundhouse.cli.render import console, describe, fail, human_duration, print_json, styled
from roundhouse.errors import RoundhouseError

__all__ = ["health", "import_", "up"]


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
        fail(describe(exc))
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    if not config.servers:
        fail(f"{file} names no servers")
    with gateway(ctx) as client:
        imported = client.import_servers([spec_to_storage(spec) for spec in config.servers])
    console().print(f"[green]imported[/green] {len(imported)}: {', '.join(imported)}")


def health(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The gateway's status and its servers by health."""
    with gateway(ctx) as client:
        info = client.gateway()
        servers = client.health()
    if as_json:
        print_json(servers)
        return
    out = console()
    status = "healthy" if info.get("status") == "ok" else "unhealthy"
    uptime = human_duration(info.get("uptime_seconds"))
    out.print(
        f"gateway {client.url}: {styled(status)}, version {info.get('version', '?')}, up {uptime}"
    )
    avg = servers.get("avg_response_time_ms")
    out.print(
        f"servers: {servers.get('total_servers', 0)} total, "
        f"{styled('healthy')} {servers.get('healthy_servers', 0)}, "
        f"{styled('degraded')} {servers.get('degraded_servers', 0)}, "
        f"{styled('unhealthy')} {servers.get('unhealthy_servers', 0)}; "
        f"avg response {'-' if avg is None else f'{avg:.1f} ms'}"
    )
