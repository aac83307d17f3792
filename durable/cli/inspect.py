"""Commands that read: list, show, history."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from durable.cli.common import (
    KIND_STYLE,
    CliError,
    cli,
    client,
    db_option,
    format_when,
    json_option,
    make_console,
    print_json,
    styled_status,
    summarize,
)
from durable.status import Status


@cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False),
              help="Only workflows in this state.")
@click.option("--name", help="Only workflows of this name (module.qualname).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@json_option
@db_option
def list_command(status: str | None, name: str | None, limit: int, as_json: bool,
                 db: str) -> None:
    """List workflows, newest first."""
    with client(db, read_only=True) as engine:
        infos = engine.list_workflows(status=status.upper() if status else None, name=name,
                                      limit=limit)
    if as_json:
        print_json([info.model_dump(mode="json") for info in infos])
        return
    console = make_console()
    if not infos:
        console.print(f"no workflows in {db}" + (" match" if status or name else ""))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "STATUS", "RUN", "WAITING / ERROR", "PARENT", "UPDATED"):
        table.add_column(column, no_wrap=column not in ("NAME", "WAITING / ERROR"),
                         overflow="fold")
    for info in infos:
        detail = Text(info.error, style="red") if info.error else Text(info.waiting or "")
        table.add_row(info.workflow_id, info.name, styled_status(info.status.value), str(info.run),
                      detail, info.parent_id or "", format_when(info.updated))
    console.print(table)
    if len(infos) == limit:
        console.print(f"[dim](first {limit}; use --limit to see more)[/dim]")


@cli.command()
@click.argument("workflow_id", required=False)
@click.option("--bottlenecks", is_flag=True,
              help="Instead of one workflow: the slowest steps (p50, p95) and the most retried.")
@json_option
@db_option
def show(workflow_id: str | None, bottlenecks: bool, as_json: bool, db: str) -> None:
    """Show one workflow: state, run, parent and children, what it waits for, result."""
    from durable.errors import WorkflowNotFound
    from durable.events import error_text, readable

    if bottlenecks:
        show_bottlenecks(db)
        return
    if workflow_id is None:
        raise CliError("durable show needs a WORKFLOW_ID (or --bottlenecks)")
    with client(db, read_only=True) as engine:
        row = engine.store.workflow(workflow_id)
        if row is None:
            raise WorkflowNotFound(workflow_id)
        events = engine.store.events(workflow_id)
        children = [(c.workflow_id, c.status) for c in
                    engine.store.workflows(None, None, 1000, parent_id=workflow_id)]
        for event in events:  # detached children have no parent link: the log knows them
            if event.kind == "child.started" and json.loads(event.payload).get("detached"):
                child = engine.store.workflow(json.loads(event.payload)["workflow_id"])
                if child is not None:
                    children.append((child.workflow_id, f"{child.status}, detached"))
        waiting = row.waiting if not row.finished else None
        if waiting and row.wait_signal:
            pending = sum(1 for s in engine.store.signals(workflow_id)
                          if s[1] == row.wait_signal and s[3] is None)
            waiting += f" ({pending} sent, not yet consumed)" if pending else ""
        elif waiting and waiting.startswith("child "):
            child = engine.store.workflow(waiting[len("child "):])
            waiting += f" ({child.status})" if child else ""
        elif waiting and row.wake_at and row.status in ("WAITING", "RETRYING"):
            waiting += f" (due {format_when(row.wake_at)} local)"
    # The current run's input: continue-as-new starts each run with its own event.
    started = next((e for e in reversed(events) if e.kind == "workflow.started"), None)
    result = readable(row.output_encoding or "json", row.output) \
        if row.status == "SUCCESS" else None
    fields: dict[str, Any] = {
        "workflow_id": row.workflow_id, "name": row.name, "status": row.status, "run": row.run,
        "input": started.args if started else None, "parent_id": row.parent_id,
        "children": [{"workflow_id": c, "status": s} for c, s in children],
        "waiting": waiting, "error": error_text(row), "result": result,
        "owner": row.owner, "events": len(events),
        "created": format_when(row.created), "updated": format_when(row.updated),
    }
    if row.queue is not None or row.start_at is not None:
        fields["queue"] = {"name": row.queue, "priority": row.priority,
                           "dedup_id": row.dedup_id, "start_at": format_when(row.start_at),
                           "dequeued": format_when(row.dequeued)}
    if as_json:
        print_json(fields)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("workflow", row.workflow_id)
    table.add_row("name", row.name)
    table.add_row("status", styled_status(row.status))
    table.add_row("run", str(row.run))
    table.add_row("input", fields["input"] or "")
    table.add_row("parent", row.parent_id or "-")
    if row.queue is not None:
        table.add_row("queue", f"{row.queue} (priority {row.priority}"
                      + (f", dedup_id {row.dedup_id}" if row.dedup_id else "") + ")"
                      + (f", dequeued {format_when(row.dequeued)}" if row.dequeued else ""))
    if row.start_at is not None:
        table.add_row("start at", format_when(row.start_at))
    table.add_row("children", "\n".join(f"{c} ({s})" for c, s in children) or "-")
    if waiting:
        table.add_row("waiting for", Text(waiting, style="yellow"))
    if row.owner:
        from durable.engine.worker import owner_gone

        gone = " (its process is gone: the next engine that opens the database recovers it)"
        table.add_row("owner", row.owner + (gone if owner_gone(row.owner) else ""))
    if fields["error"]:
        table.add_row("error", Text(fields["error"], style="red"))
    if row.status == "SUCCESS":
        table.add_row("result", summarize(result, limit=400))
    table.add_row("events", str(len(events)))
    table.add_row("created", format_when(row.created))
    table.add_row("updated", format_when(row.updated))
    make_console().print(table)


def _event_value(kind: str, encoding: str, value: Any, cut: int = 0) -> str:
    """The payload of an event, put the way a person reads it (``cut``: date chars to drop)."""
    if kind == "workflow.started":
        return ""  # the args column already shows the input
    if isinstance(value, dict) and kind.startswith("sleep."):
        return f"due {format_when(value.get('due'))[cut:]}"
    if kind == "signal.waiting" and isinstance(value, dict):
        deadline = value.get("deadline")
        return f"until {format_when(deadline)}" if deadline else "no timeout"
    if kind == "step.retry" and isinstance(value, dict):
        return f"attempt {value.get('attempt')} failed: {value.get('error')}"
    return summarize(value, plain=encoding == "error")


@cli.command()
@click.argument("workflow_id")
@json_option
@db_option
def history(workflow_id: str, as_json: bool, db: str) -> None:
    """Show a workflow's event log: one row per recorded event."""
    with client(db, read_only=True) as engine:
        events = engine.history(workflow_id)
    if as_json:
        print_json([event.model_dump(mode="json") for event in events])
        return
    days = {format_when(event.created)[:10] for event in events}
    # One day: the date goes in the title, so the rows keep room for arguments and values.
    title, cut = (f"history of {workflow_id} ({days.pop()}, local time)", 11) \
        if len(days) == 1 else (f"history of {workflow_id} (local time)", 0)
    table = Table(title=title, title_justify="left", header_style="bold", box=None,
                  pad_edge=False)
    for column in ("#", "CALL", "KIND", "NAME", "ARGS", "VALUE", "TIME"):
        wraps = column in ("NAME", "ARGS", "VALUE")
        table.add_column(column, justify="right" if column in ("#", "CALL") else "left",
                         no_wrap=not wraps, overflow="fold",
                         max_width=60 if column in ("ARGS", "VALUE") else None)
    for event in events:
        style = "red" if event.kind.endswith(("failed", "cancelled")) else KIND_STYLE.get(
            event.kind.partition(".")[0], "")
        table.add_row(str(event.position), str(event.call), Text(event.kind, style=style),
                      event.name, event.args,
                      _event_value(event.kind, event.encoding, event.value, cut),
                      format_when(event.created)[cut:])
    make_console().print(table)


# -- control --------------------------------------------------------------------


def show_bottlenecks(db: str) -> None:
    """The slowest steps by p50 and p95, and the most retried, over the whole log."""
    from durable.ui.bottlenecks import bottleneck_table, most_retried

    with client(db) as engine:
        stats = engine.store.step_stats(0.0, ())
    console = make_console()
    console.print(bottleneck_table(stats))
    console.print(most_retried(stats))
