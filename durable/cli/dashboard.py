"""The dashboard command: ``durable ui``."""

from __future__ import annotations

import os

import click

from durable.cli.common import CliError, cli, db_option, import_modules, modules_option
from durable.store.backend import is_url


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; another address exposes the dashboard beyond "
              "this machine (its token still guards it).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--read-only", is_flag=True, help="Show everything, allow no action.")
@modules_option
@db_option
def ui(host: str, port: int, read_only: bool, modules: tuple[str, ...], db: str) -> None:
    """Serve the dashboard: overview, workflows, timelines, graphs, inspector, /metrics."""
    try:
        import uvicorn  # noqa: F401  (the ui extra)

        from durable.ui import serve
    except ImportError as error:
        raise CliError(f"durable ui needs the ui extra ({error.name} is missing): "
                       "pip install 'durable[ui]'") from error
    import_modules(modules)
    if not is_url(db) and not os.path.exists(db):
        raise CliError(f"no database at {db!r}; pass --db PATH or set $DURABLE_DB")
    serve(db, host=host, port=port, read_only=read_only, modules=modules, announce=click.echo)
