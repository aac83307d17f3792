"""The dashboard's actions (POST only): signal, pause, resume, cancel, terminate, retry, fork.

Each one checks the CSRF token of the form and the request's Origin (the Guard has
already checked the Host header and the session token), runs through the public Engine
API in a worker thread, and redirects back to a workflow page with what happened.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from durable.errors import DurableError
from durable.ui.security import CSRF_FIELD, same_origin
from durable.ui.svg import workflow_link

if TYPE_CHECKING:
    from durable.ui.app import Dashboard

VERBS = ("signal", "pause", "resume", "cancel", "terminate", "retry", "fork")


async def act(board: Dashboard, request: Request) -> Response:
    """Run one action on a workflow; 403 when read-only, without CSRF token, or cross-site."""
    workflow_id: str = request.path_params["workflow_id"]
    verb: str = request.path_params["verb"]
    if board.read_only:
        return PlainTextResponse("durable ui runs with --read-only: actions are off.", 403)
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        return PlainTextResponse("Cross-origin action refused.", 403)
    form = await request.form()
    if form.get(CSRF_FIELD) != board.csrf:
        return PlainTextResponse("Missing or wrong CSRF token: reload the page and retry.", 403)
    if verb not in VERBS or (verb in ("terminate", "retry") and verb not in
                             board.actions_available()):
        return PlainTextResponse(f"Unknown action {verb!r}.", 404)
    fields = {key: str(value) for key, value in form.items()}
    try:
        target, message = await run_in_threadpool(_run, board, verb, workflow_id, fields)
    except (DurableError, ValueError) as error:
        return _back(workflow_id, f"{verb} failed: {error}", ok=False)
    return _back(target, message, ok=True)


def _run(board: Dashboard, verb: str, workflow_id: str, fields: dict[str, str]) -> tuple[str, str]:
    """Do the action; ``(workflow page to show, message)``."""
    engine: Any = board.engine
    if verb == "signal":
        name = fields.get("name", "").strip()
        if not name:
            raise ValueError("a signal needs a name")
        text = fields.get("payload", "").strip()
        try:
            payload = json.loads(text) if text else None
        except ValueError as error:
            raise ValueError(f"the payload is not JSON ({error})") from error
        engine.send_signal(workflow_id, name, payload)
        return workflow_id, f"signal {name!r} sent"
    if verb == "fork":
        try:
            at = int(fields.get("at", ""))
        except ValueError as error:
            raise ValueError("fork needs a call number (at)") from error
        handle = engine.fork(workflow_id, at=at, new_id=fields.get("new_id") or None)
        return handle.workflow_id, f"forked from {workflow_id} at call #{at}"
    getattr(engine, verb)(workflow_id)
    return workflow_id, f"{verb} requested"


def _back(workflow_id: str, message: str, ok: bool) -> Response:
    query = urlencode({"message": message, **({} if ok else {"ok": "0"})})
    return RedirectResponse(f"{workflow_link(workflow_id)}?{query}", status_code=303)
