"""``roundhouse bindery``: the bundled task server's processes.

``serve`` runs the backend (REST + JSON-RPC over the task database); ``mcp`` runs its MCP face
on stdio, which launches the backend itself.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["bindery_app", "mcp", "serve"]

bindery_app = typer.Typer(
    name="bindery",
    help="Bindery, the bundled task server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@bindery_app.command()
def serve(
    db: Annotated[str, typer.Option("--db", help="A SQLite file path or a postgresql:// URL.")],
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Port to bind (0: any free).")
    ] = 0,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
) -> None:
    """Run the Bindery backend (REST + JSON-RPC over the task database) until Ctrl-C."""
    from roundhouse.bindery.backend.run import run

    raise typer.Exit(run(db, host=host, port=port, log_level=log_level))


@bindery_app.command()
def mcp() -> None:
    """Run Bindery's MCP face on stdio (it launches its backend; see docs/BINDERY.md).

    Settings come from the environment: MCP_AUTO_LAUNCH_BACKEND, BINDERY_PORT, BINDERY_URL,
    BINDERY_DB, BINDERY_TIMEOUT, BINDERY_CACHE_TTL, MCP_PRODUCTION.
    """
    from roundhouse.bindery.face import main

    main()
