"""Commands that operate many workflows: start, retry, prune, schedules, and the bulk
forms of pause, resume and cancel (``--status/--name``)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import click
from rich.table import Table

from durable.cli.common import (
    CliError,
    cli,
    client,
    db_option,
    echo,
    format_when,
    import_modules,
)
from durable.cli.common import make_console as console
from durable.engine import Engine
from durable.errors import WorkflowFinished
from durable.status import Status

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FINISHED = [s.value for s in Status if s.finished]


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``15m``, ``45s``, ``2w`` (or plain seconds) as a timedelta."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if found is None:
        raise CliError(f"--older-than {text!r}: give a number and a unit, e.g. 30d, 12h, 15m")
    return timedelta(seconds=float(found[1]) * _UNITS[found[2] or "s"])


def _json_args(values: tuple[str, ...]) -> list[object]:
    args = []
    for text in values:
        try:
            args.append(json.loads(text))
        except json.JSONDecodeError as error:
            raise CliError(f"argument {text!r} is not valid JSON ({error.msg}); quote a "
                           "string as '\"text\"'") from None
    return args


@cli.command("start")
@click.argument("target", metavar="MODULE:WORKFLOW")
@click.argument("args", nargs=-1, metavar="[JSON ARGS]...")
@click.option("--id", "workflow_id", help="Workflow id (default: a new uuid); an id that "
              "exists is not started again.")
@click.option("--queue", help="Enqueue it on this queue (declared by the workers' modules).")
@click.option("--priority", type=int, help="Its priority in the queue (lower runs first).")
@db_option
def start_command(target: str, args: tuple[str, ...], workflow_id: str | None,
                  queue: str | None, priority: int | None, db: str) -> None:
    """Start a workflow with JSON arguments; a worker that imports MODULE runs it.

    \b
    durable start shop.orders:checkout '"A-17"' 4200 --id order-A-17
    durable start shop/orders.py:checkout '"A-18"' --queue orders
    """
    from durable.runtime.registry import Workflow

    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise CliError(f"{target!r}: give MODULE:WORKFLOW, e.g. shop.orders:checkout")
    (module,) = import_modules([module_name])
    wf = getattr(module, attribute, None)
    if not isinstance(wf, Workflow):
        raise CliError(f"{module_name} has no workflow {attribute!r}; decorate it with "
                       "@durable.workflow")
    with client(db, create=True) as engine:
        handle = engine.start(wf, *_json_args(args), workflow_id=workflow_id, queue=queue,
                              priority=priority)
        status = handle.status()
    click.echo(f"started {handle.workflow_id} ({wf.name}, {status})")


@cli.command()
@click.argument("workflow_id")
@db_option
def retry(workflow_id: str, db: str) -> None:
    """Run a FAILURE, CANCELLED or DIVERGED workflow again as a new run of the same id.

    The new run keeps every call recorded before the failure; the rest runs anew on a
    worker. The old run's history stays in `durable history ID`.
    """
    with client(db) as engine:
        engine.retry(workflow_id)
        run = engine.row(workflow_id).run
    click.echo(f"{workflow_id} runs again as run {run}; a worker that imports its module "
               "runs it")


@cli.command()
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Only workflows that ended more than AGE ago: 30d, 12h, 15m, 45s.")
@click.option("--status", type=click.Choice(_FINISHED, case_sensitive=False),
              help="Only workflows that ended so.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@db_option
def prune(older_than: str, status: str | None, yes: bool, db: str) -> None:
    """Delete finished workflows with their events, signals and published values.

    Never an unfinished workflow, nor an ancestor of one. Works in batches, so running
    workers are held up only briefly.
    """
    age = parse_age(older_than)
    what = f"{status.upper() if status else 'finished'} workflows that ended more than " \
           f"{older_than} ago"
    if not yes:
        click.confirm(f"delete {what}, with their history?", abort=True)
    with client(db) as engine:
        deleted = engine.prune(older_than=age, status=status.upper() if status else None)
    click.echo(f"pruned {deleted} workflow(s)")


@cli.command()
@db_option
def schedules(db: str) -> None:
    """The stored schedules, with their next due times (local time)."""
    with client(db) as engine:
        rows = engine.schedules()
    if not rows:
        click.echo("no schedules")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "CRON", "TIMEZONE", "MISSED", "WORKFLOW", "NEXT DUE", "FROM"):
        table.add_column(column)
    now = time.time()
    for row in rows:
        due = format_when(row.next_at) + (" (overdue)" if row.next_at <= now else "")
        table.add_row(row.name, row.cron, row.timezone, row.missed, row.workflow, due,
                      "@durable.scheduled" if row.declared else "engine.schedule")
    console().print(table)


# -- pause, resume, cancel: one id, or every match of --status/--name ----------------


def control_command(action: str, one: Callable[[Engine, str], str], workflow_id: str | None,
                    status: str | None, name: str | None, yes: bool, db: str) -> None:
    """Apply ``action`` to one workflow, or to every unfinished match of the filters."""
    if workflow_id is not None:
        if status or name:
            raise CliError(f"give an ID or --status/--name filters to {action}, not both")
        with client(db) as engine:
            echo(one(engine, workflow_id))
        return
    if not (status or name):
        raise CliError(f"give a workflow ID to {action}, or --status/--name to {action} "
                       "every match")
    with client(db) as engine:
        matches = [i.workflow_id for i in engine.list_workflows(
            status=status.upper() if status else None, name=name, limit=sys.maxsize)
            if not i.status.finished]
        filters = " ".join(f"--{k} {v}" for k, v in (("status", status), ("name", name)) if v)
        if not matches:
            click.echo(f"no unfinished workflow matches {filters}")
            return
        if not yes:
            click.confirm(f"{action} {len(matches)} workflow(s) matching {filters}?", abort=True)
        done = 0
        for match in matches:
            try:
                getattr(engine, action)(match)
                done += 1
            except WorkflowFinished:
                pass  # it ended meanwhile
    click.echo(f"{action}: {done} of {len(matches)} workflow(s)")


def bulk_options(fn: Callable[..., None]) -> Callable[..., None]:
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)
    fn = click.option("--name", help="Every unfinished workflow of this name.")(fn)
    fn = click.option("--status", type=click.Choice([s.value for s in Status if not s.finished],
                                                    case_sensitive=False),
                      help="Every workflow in this status.")(fn)
    return click.argument("workflow_id", required=False)(fn)
