"""The dashboard's pages (GET): overview, list, workflow, graph, inspector, bottlenecks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from durable.errors import DurableError, NonDeterminismError, WorkflowFailed
from durable.status import Status
from durable.store import WorkflowRow
from durable.store.reads import WorkflowFilter
from durable.ui import svg
from durable.ui.dag import dag_name, dag_view
from durable.ui.views import (
    STATUS_ORDER,
    TIMELINE_CALLS,
    CallSpan,
    call_spans,
    durable_state,
    error_parts,
    format_cursor,
    parse_cursor,
    show_arguments,
    show_value,
    waiting_for,
)

if TYPE_CHECKING:
    from durable.ui.app import Dashboard

PAGE_SIZE = 50
EVENT_PAGE = 200
TREE_LIMIT = 500
FAILURES_SHOWN = 10
BOTTLENECK_WINDOWS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "all": None}


def overview(board: Dashboard, request: Request) -> Response:
    return board.render("overview.html", **_overview_data(board))


def overview_live(board: Dashboard, request: Request) -> Response:
    return board.render("_overview_live.html", **_overview_data(board))


def _overview_data(board: Dashboard) -> dict[str, Any]:
    now = time.time()
    since = (now // 60 - 59) * 60  # the current minute is the last bar
    counts = board.store.status_counts()
    oldest = board.store.oldest_waiting()
    return {
        "counts": [(s, counts.get(s, 0)) for s in STATUS_ORDER if s in counts or s != "SKIPPED"],
        "total": sum(counts.values()),
        "chart": board.svg(svg.throughput_chart(board.store.throughput(since, 60), since)),
        "failures": [(row, _error_of(row)[0]) for row in
                     board.store.latest_failures(FAILURES_SHOWN)],
        "queues": board.store.queue_depths(),
        "oldest": oldest,
        "oldest_age": now - oldest.since if oldest else None,
    }


def workflow_list(board: Dashboard, request: Request) -> Response:
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUS_ORDER:
        status = None
    where = WorkflowFilter(status=status, name=query.get("name") or None,
                           id_prefix=query.get("prefix") or None, search=query.get("q") or None)
    page = board.store.list_workflows(where, parse_cursor(query.get("after")), PAGE_SIZE)
    return board.render("list.html", rows=[(r, _error_of(r)[0]) for r in page.rows],
                        where=where, statuses=STATUS_ORDER,
                        next_cursor=format_cursor(page.next_cursor),
                        first_page="after" in query)


def _error_of(row: WorkflowRow) -> tuple[str, str]:
    """The failure of a workflow or the error it is set aside with: (summary, traceback)."""
    if row.output_encoding == "error" and row.output is not None:
        return error_parts(row.output)
    if row.error:
        return error_parts(row.error)
    return "", ""


def _row_or_404(board: Dashboard, request: Request) -> WorkflowRow | Response:
    workflow_id = request.path_params["workflow_id"]
    row = board.store.workflow(workflow_id)
    if row is None:
        return board.render("missing.html", status_code=404, workflow_id=workflow_id)
    return row


def workflow(board: Dashboard, request: Request) -> Response:
    row = _row_or_404(board, request)
    if isinstance(row, Response):
        return row
    tree = board.store.descendants(row.workflow_id, TREE_LIMIT)
    return board.render(
        "workflow.html", row=row, live=_live_data(board, row), actions=board.actions_available(),
        message=request.query_params.get("message"),
        fork_at=request.query_params.get("fork_at", ""),
        failed=request.query_params.get("ok") == "0",
        tree=board.svg(svg.tree(tree, row.workflow_id)) if len(tree) > 1 else None,
        is_dag=dag_name(row) is not None, inbox=board.store.signal_inbox(row.workflow_id),
        args=show_arguments(row.name.rpartition('.')[2], row.input_encoding, row.input))


def workflow_live(board: Dashboard, request: Request) -> Response:
    row = _row_or_404(board, request)
    if isinstance(row, Response):
        return row
    return board.render("_workflow_live.html", row=row, live=_live_data(board, row))


def _live_data(board: Dashboard, row: WorkflowRow) -> dict[str, Any]:
    """What changes while a workflow runs: status, waits, result, timeline, recent log."""
    now = time.time()
    events = board.store.events(row.workflow_id, row.run)
    spans = call_spans(events)
    if row.status == Status.RUNNING and events and not any(s.end is None for s in spans[-1:]):
        # Its next call is running now (a step records nothing until it returns).
        spans.append(CallSpan(spans[-1].call + 1 if spans else 1, "running", "(next call)",
                              "", events[-1].created))
    shown = spans[-TIMELINE_CALLS:]
    start = events[0].created if events else row.created
    end = now if not row.finished else max([row.updated] + [e.created for e in events[-1:]])
    if shown and len(shown) < len(spans):
        start = min(s.start for s in shown)
    child = None
    if row.waiting and row.waiting.startswith("child "):
        child = board.store.workflow(row.waiting[len("child "):])
    summary, traceback = _error_of(row)
    total = board.store.event_count(row.workflow_id)
    tail = board.store.events_tail(row.workflow_id, EVENT_PAGE)
    return {
        "finished": row.finished,
        "waiting": waiting_for(row, board.store.signal_inbox(row.workflow_id), child, now),
        "result": show_value(row.output_encoding, row.output)
        if row.status == Status.SUCCESS else None,
        "error": summary, "traceback": traceback,
        "timeline": board.svg(svg.timeline(
            shown, start, end,
            fork_from=svg.workflow_link(row.workflow_id) if board.actions_available() else None,
        )) if shown else None,
        "calls": len(spans), "calls_shown": len(shown),
        "events": [(e, show_value(e.encoding, e.payload, 300)) for e in tail],
        "event_total": total,
        "first_shown": tail[0].position if tail else 0,
        "state": durable_state(events),
        "published": [(p, show_value(p.encoding, p.payload, 1000))
                      for p in board.store.published_events(row.workflow_id)],
    }


def event_log(board: Dashboard, request: Request) -> Response:
    row = _row_or_404(board, request)
    if isinstance(row, Response):
        return row
    try:
        after = int(request.query_params.get("after", "-1"))
    except ValueError:
        after = -1
    events = board.store.events_after(row.workflow_id, after, EVENT_PAGE)
    return board.render(
        "events.html", row=row, after=after,
        events=[(e, show_value(e.encoding, e.payload, 300)) for e in events],
        next_after=events[-1].position if len(events) == EVENT_PAGE else None)


def graph(board: Dashboard, request: Request) -> Response:
    row = _row_or_404(board, request)
    if isinstance(row, Response):
        return row
    dag = None
    if dag_name(row) is not None:
        view = dag_view(row, board.store.events(row.workflow_id, row.run),
                        board.store.published_events(row.workflow_id))
        dag = (view, board.svg(svg.task_graph(view)))
    tree = board.store.descendants(row.workflow_id, TREE_LIMIT)
    parent = board.store.workflow(row.parent_id) if row.parent_id else None
    return board.render("graph.html", row=row, dag=dag, parent=parent,
                        tree=board.svg(svg.tree(tree, row.workflow_id)) if len(tree) > 1
                        else None)


def inspect(board: Dashboard, request: Request) -> Response:
    row = _row_or_404(board, request)
    if isinstance(row, Response):
        return row
    context: dict[str, Any] = {"row": row, "modules": board.modules, "outcome": None}
    if board.modules:
        context.update(_replay(board, row))
    return board.render("inspect.html", **context)


def _replay(board: Dashboard, row: WorkflowRow) -> dict[str, Any]:
    """Replay against the code of ``-m MODULE``: clean, or where it diverged."""
    try:
        board.engine.replay(row.workflow_id)
    except NonDeterminismError as error:
        recorded = [e for e in board.store.events(row.workflow_id, row.run)
                    if e.call == error.call]
        return {"outcome": "diverged", "error": error,
                "recorded_events": [(e, show_value(e.encoding, e.payload, 300))
                                    for e in recorded]}
    except WorkflowFailed as error:
        return {"outcome": "clean", "detail": f"replays to its recorded failure: {error.error}"}
    except DurableError as error:
        return {"outcome": "error", "detail": str(error)}
    detail = ("replays to its recorded result" if row.status == Status.SUCCESS
              else f"every recorded call matches (it is {row.status.lower()})")
    return {"outcome": "clean", "detail": detail}


def bottlenecks(board: Dashboard, request: Request) -> Response:
    window = request.query_params.get("window", "24h")
    if window not in BOTTLENECK_WINDOWS:
        window = "24h"
    seconds = BOTTLENECK_WINDOWS[window]
    stats = board.store.step_stats(0.0 if seconds is None else time.time() - seconds, ())
    retried = sorted((s for s in stats if s.retries), key=lambda s: (-s.retries, s.name))
    return board.render("bottlenecks.html", stats=stats[:50], retried=retried[:20],
                        window=window, windows=list(BOTTLENECK_WINDOWS))
