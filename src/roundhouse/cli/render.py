"""What the commands print: styled states, durations, server and instance tables, errors.

rich is imported inside the functions that use it, so that ``roundhouse --help`` answers at once.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from roundhouse.errors import InvalidInput, RoundhouseError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "console",
    "dash",
    "describe",
    "escape",
    "fail",
    "human_duration",
    "instance_row",
    "instance_table",
    "log_text",
    "print_json",
    "servers_table",
    "styled",
    "transport_summary",
]

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


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one red line on stderr."""
    from rich.markup import escape

    console(stderr=True).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def describe(exc: RoundhouseError) -> str:
    field = getattr(exc, "field", None)
    if isinstance(exc, InvalidInput) and field and field not in exc.message:
        return f"{exc.message} (field: {field})"
    return exc.message


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def styled(value: str) -> str:
    style = _STATE_STYLES.get(value)
    return f"[{style}]{value}[/{style}]" if style else value


def dash(value: Any) -> str:
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


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def transport_summary(transport: dict[str, Any]) -> str:
    kind = transport.get("type", "stdio")
    if kind in ("http", "sse"):
        return f"{kind} {transport.get('url', '')}"
    command = shlex.join([transport.get("command", ""), *transport.get("args", [])])
    if kind == "local-http":
        paths = f"health {transport.get('health_path')}, mcp {transport.get('mcp_path')}"
        return f"local-http {command} ({paths})"
    return f"stdio {command}"


def instance_table(*, with_server: bool) -> Table:
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


def instance_row(instance: dict[str, Any]) -> list[str]:
    return [
        str(instance.get("id", "-")),
        styled(str(instance.get("state", "-"))),
        styled(str(instance.get("health", "-"))),
        dash(instance.get("pid")),
        dash(instance.get("port")),
        human_duration(instance.get("uptime_seconds")),
        dash(instance.get("restart_count")),
    ]


def servers_table(servers: list[dict[str, Any]]) -> Table:
    table = instance_table(with_server=True)
    for server in servers:
        instances = server.get("instances") or []
        if not instances:
            state, health = str(server.get("state", "-")), str(server.get("health", "-"))
            table.add_row(server["slug"], "-", styled(state), styled(health), *["-"] * 4)
        for instance in instances:
            table.add_row(server["slug"], *instance_row(instance))
    return table


def log_text(line: dict[str, Any]) -> str:
    ts = line.get("ts")
    when = (
        time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, int | float) else "--:--:--"
    )
    return f"{when} {line.get('instance') or '-'} | {line.get('line', '')}"
