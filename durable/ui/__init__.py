"""``durable ui``: a local dashboard to watch, inspect and steer the workflows of a database.

Needs the ``ui`` extra (``pip install 'durable[ui]'``): Starlette, Jinja2, uvicorn and
prometheus_client. Importing this package imports none of them; :func:`serve` does.
"""

from __future__ import annotations

from collections.abc import Callable


def serve(db: str, *, host: str = "127.0.0.1", port: int = 8765, read_only: bool = False,
          modules: tuple[str, ...] = (), token: str | None = None,
          announce: Callable[[str], None] = print) -> None:
    """Serve the dashboard of ``db`` until interrupted; ``announce`` gets the link to open.

    The engine is a client (``workers=0``): the dashboard runs no workflow itself.
    """
    import uvicorn

    from durable.engine import Engine
    from durable.ui.app import create_app
    from durable.ui.security import new_token

    token = token or new_token()
    engine = Engine(db, workers=0)
    try:
        app = create_app(engine, token, read_only=read_only, host=host, port=port,
                         modules=modules)
        shown = f"[{host}]" if ":" in host else host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else shown
        announce(f"durable ui on {db}: open http://{shown}:{port}/?token={token}"
                 + (" (read-only)" if read_only else ""))
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        engine.close()
