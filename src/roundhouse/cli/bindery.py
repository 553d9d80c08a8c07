"""``roundhouse bindery``: the bundled task server's processes (``serve``: the backend)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["bindery_app", "serve"]

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
