"""The dashboard's ASGI application: pages, live fragments, actions and ``/metrics``.

Every page handler is a plain function (Starlette runs it in its thread pool, since the
store's reads block). The engine is a client (``workers=0``): it reads through
``engine.store`` as :class:`~durable.store.reads.StoreReads` and acts through the public
Engine API.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durable.store.reads import StoreReads
from durable.ui import actions, pages, svg
from durable.ui.metrics import registry_for
from durable.ui.security import Guard, allowed_hosts, cookie_name, csrf_for
from durable.ui.views import format_duration

if TYPE_CHECKING:
    from durable.engine import Engine

class Dashboard:
    """What every handler shares: the engine, its store, templates and settings."""

    def __init__(self, engine: Engine, token: str, read_only: bool,
                 modules: tuple[str, ...]) -> None:
        self.engine = engine
        self.store: StoreReads = engine.store
        self.token, self.csrf = token, csrf_for(token)
        self.read_only, self.modules = read_only, modules
        self.templates = Environment(loader=PackageLoader("durable.ui", "templates"),
                                     autoescape=select_autoescape(["html"]))
        self.templates.filters["when"] = when
        self.templates.filters["duration"] = format_duration
        self.templates.globals["link"] = svg.workflow_link
        self.metrics = registry_for(self.store)

    def actions_available(self) -> list[str]:
        """The control actions this engine offers (terminate and retry when it has them)."""
        if self.read_only:
            return []
        found = ["pause", "resume", "cancel"]
        found += [verb for verb in ("terminate", "retry") if hasattr(self.engine, verb)]
        return found

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            csrf=self.csrf, read_only=self.read_only, now=time.time(), **context)
        return HTMLResponse(html, status_code=status_code)

    @staticmethod
    def svg(markup: str) -> Markup:
        """SVG built by :mod:`durable.ui.svg`, which escapes every text it holds."""
        return Markup(markup)


def when(moment: float | None) -> str:
    """A UTC time for a table."""
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def create_app(engine: Engine, token: str, *, read_only: bool = False, host: str = "127.0.0.1",
               port: int = 8765, modules: tuple[str, ...] = ()) -> Guard:
    """The dashboard on ``engine``, guarded by ``token`` and the Host check."""
    board = Dashboard(engine, token, read_only, modules)

    def page(handler: Any) -> Any:
        def endpoint(request: Request) -> Response:
            return handler(board, request)  # type: ignore[no-any-return]
        return endpoint

    def action(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return await handler(board, request)  # type: ignore[no-any-return]
        return endpoint

    def metrics(request: Request) -> Response:
        return Response(generate_latest(board.metrics), media_type=CONTENT_TYPE_LATEST)

    static = resources.files("durable.ui") / "static"
    routes = [
        Route("/", page(pages.overview)),
        Route("/overview/live", page(pages.overview_live)),
        Route("/workflows", page(pages.workflow_list)),
        Route("/bottlenecks", page(pages.bottlenecks)),
        Route("/metrics", metrics),
        Route("/w/{workflow_id:path}/live", page(pages.workflow_live)),
        Route("/w/{workflow_id:path}/events", page(pages.event_log)),
        Route("/w/{workflow_id:path}/graph", page(pages.graph)),
        Route("/w/{workflow_id:path}/inspect", page(pages.inspect)),
        Route("/w/{workflow_id:path}/do/{verb}", action(actions.act), methods=["POST"]),
        Route("/w/{workflow_id:path}", page(pages.workflow)),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, token, allowed_hosts(host, port), cookie_name(port))


__all__ = ["Dashboard", "create_app"]
