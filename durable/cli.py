"""The ``durable`` command line: look at, steer and run the workflows of one database.

::

    durable list [--status S] [--name N]     workflows, newest first
    durable show ID                          state, what it waits for, result or error
    durable history ID                       its event log as a table
    durable signal ID NAME [JSON]            send a signal from any process
    durable pause|resume|cancel ID
    durable replay ID -m MODULE              replay the log against the current code
    durable fork ID --at N                   keep calls 1..N, run the rest anew
    durable check MODULE...                  replay every unfinished workflow (pre-deploy gate)
    durable worker MODULE... [--workers N]   run workflows until SIGTERM / Ctrl-C
    durable demo                             kill -9 a workflow mid-way and watch it resume

Every command takes ``--db PATH`` (default ``durable.db``, or ``$DURABLE_DB``). A
MODULE is a dotted module name (importable from the current directory) or a file
path. Errors of durable print as one line, ``error: ...``, with exit code 2;
``check`` and ``replay`` exit with 1 when the code diverged from a history.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from durable.engine import Engine
from durable.errors import DurableError, NonDeterminismError, UnknownWorkflow, WorkflowFailed
from durable.status import Status

#: ``check`` and ``replay`` found a divergence (or a workflow the code no longer defines).
EXIT_DIVERGED = 1
#: A usage error or a DurableError: nothing was checked or changed.
EXIT_ERROR = 2

_STATUS_STYLE = {
    "PENDING": "dim", "RUNNING": "cyan", "RETRYING": "yellow", "WAITING": "yellow",
    "PAUSED": "magenta", "SUCCESS": "green", "FAILURE": "bold red", "CANCELLED": "dim",
    "SKIPPED": "dim",
}
_KIND_STYLE = {"step": "green", "signal": "magenta", "sleep": "blue", "child": "cyan",
               "workflow": "bold", "value": "dim"}

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure the user can fix: printed as ``error: ...``, exit code 2, no traceback."""

    exit_code = EXIT_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turns every DurableError raised by a command into a one-line ``error:``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DurableError as error:
            raise CliError(str(error)) from error


def _db_option(fn: F) -> F:
    return click.option(
        "--db", default="durable.db", envvar="DURABLE_DB", show_default=True,
        show_envvar=True, type=click.Path(dir_okay=False), help="The SQLite database file.",
    )(fn)


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        fn
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="durable")
def cli() -> None:
    """Durable workflows on an append-only SQLite event log."""


def main() -> None:
    """The ``durable`` console script (and ``python -m durable``)."""
    cli(prog_name="durable")


# -- helpers --------------------------------------------------------------------


@contextmanager
def _client(db: str) -> Iterator[Engine]:
    """An engine that only reads, starts and signals, on a database that must exist."""
    if not os.path.exists(db):
        # Opening would create an empty database: `durable list` in the wrong directory
        # must say so instead of leaving a stray durable.db behind.
        raise CliError(f"no database at {db!r}; pass --db PATH or set $DURABLE_DB")
    engine = Engine(db, workers=0)
    try:
        yield engine
    finally:
        engine.close()


def _console(piped_width: int = 160) -> Console:
    # Piped output keeps whole rows on one line (for grep), instead of rich's 80 columns.
    sized = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(width=None if sized else piped_width, highlight=False)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _when(moment: datetime | float | None) -> str:
    """A moment in local time, to the millisecond."""
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _summary(value: Any, limit: int = 60, plain: bool = False) -> str:
    if value is None:
        return ""
    if plain and isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def import_modules(targets: Iterable[str]) -> list[ModuleType]:
    """Import modules given as dotted names or file paths, so their workflows register.

    A file is imported under the dotted name it has from the first folder above it
    without an ``__init__.py`` (``app/jobs.py`` in a package ``app`` is ``app.jobs``;
    a lone ``orders.py`` is ``orders``), which is the name a program that imports it
    gives it too, so workflow names (``module.qualname``) agree.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # console scripts do not put it there
    modules = []
    for target in targets:
        is_path = target.endswith(".py") or os.sep in target or "/" in target
        modules.append(_import_path(target) if is_path else _import_name(target, target))
    return modules


def _import_name(name: str, target: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise CliError(
                f"cannot import {target!r}: no module named {missing!r}; run from the folder "
                "that holds it, or give its file path"
            ) from error
        raise


def _import_path(target: str) -> ModuleType:
    path = Path(target).resolve()
    if path.is_dir():
        path = path / "__init__.py"
    if not path.is_file() or path.suffix != ".py":
        raise CliError(f"cannot import {target!r}: no such Python file")
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    if not parts:
        parts, folder = [folder.name], folder.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    name = ".".join(parts)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    module = _import_name(name, target)
    found = getattr(module, "__file__", None)
    if found is None or Path(found).resolve() != path:
        raise CliError(
            f"cannot import {target!r} as module {name!r}: that name is already taken by "
            f"{found or 'a built-in module'}; rename the file or pass a dotted module name"
        )
    return module


def _workflow_names(modules: Iterable[ModuleType]) -> list[str]:
    from durable.registry import Workflow

    return sorted({value.name for module in modules for value in vars(module).values()
                   if isinstance(value, Workflow)})


def _modules_option(fn: F) -> F:
    return click.option(
        "-m", "--module", "modules", multiple=True, metavar="MODULE",
        help="Module (dotted name or file) defining the workflow; repeatable.",
    )(fn)


# -- reading --------------------------------------------------------------------


@cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status], case_sensitive=False),
              help="Only workflows in this state.")
@click.option("--name", help="Only workflows of this name (module.qualname).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@_json_option
@_db_option
def list_command(status: str | None, name: str | None, limit: int, as_json: bool,
                 db: str) -> None:
    """List workflows, newest first."""
    with _client(db) as engine:
        infos = engine.list_workflows(status=status.upper() if status else None, name=name,
                                      limit=limit)
    if as_json:
        _print_json([info.model_dump(mode="json") for info in infos])
        return
    console = _console()
    if not infos:
        console.print(f"no workflows in {db}" + (" match" if status or name else ""))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "STATUS", "RUN", "WAITING / ERROR", "PARENT", "UPDATED"):
        table.add_column(column, no_wrap=column not in ("NAME", "WAITING / ERROR"),
                         overflow="fold")
    for info in infos:
        detail = Text(info.error, style="red") if info.error else Text(info.waiting or "")
        table.add_row(info.workflow_id, info.name, _status(info.status.value), str(info.run),
                      detail, info.parent_id or "", _when(info.updated))
    console.print(table)
    if len(infos) == limit:
        console.print(f"[dim](first {limit}; use --limit to see more)[/dim]")


@cli.command()
@click.argument("workflow_id")
@_json_option
@_db_option
def show(workflow_id: str, as_json: bool, db: str) -> None:
    """Show one workflow: state, run, parent and children, what it waits for, result."""
    from durable.errors import WorkflowNotFound
    from durable.events import error_text, readable

    with _client(db) as engine:
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
            waiting += f" (due {_when(row.wake_at)} local)"
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
        "created": _when(row.created), "updated": _when(row.updated),
    }
    if as_json:
        _print_json(fields)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("workflow", row.workflow_id)
    table.add_row("name", row.name)
    table.add_row("status", _status(row.status))
    table.add_row("run", str(row.run))
    table.add_row("input", fields["input"] or "")
    table.add_row("parent", row.parent_id or "-")
    table.add_row("children", "\n".join(f"{c} ({s})" for c, s in children) or "-")
    if waiting:
        table.add_row("waiting for", Text(waiting, style="yellow"))
    if row.owner:
        from durable.worker import owner_gone

        gone = " (its process is gone: the next engine that opens the database recovers it)"
        table.add_row("owner", row.owner + (gone if owner_gone(row.owner) else ""))
    if fields["error"]:
        table.add_row("error", Text(fields["error"], style="red"))
    if row.status == "SUCCESS":
        table.add_row("result", _summary(result, limit=400))
    table.add_row("events", str(len(events)))
    table.add_row("created", _when(row.created))
    table.add_row("updated", _when(row.updated))
    _console().print(table)


def _event_value(kind: str, encoding: str, value: Any, cut: int = 0) -> str:
    """The payload of an event, put the way a person reads it (``cut``: date chars to drop)."""
    if kind == "workflow.started":
        return ""  # the args column already shows the input
    if isinstance(value, dict) and kind.startswith("sleep."):
        return f"due {_when(value.get('due'))[cut:]}"
    if kind == "signal.waiting" and isinstance(value, dict):
        deadline = value.get("deadline")
        return f"until {_when(deadline)}" if deadline else "no timeout"
    if kind == "step.retry" and isinstance(value, dict):
        return f"attempt {value.get('attempt')} failed: {value.get('error')}"
    return _summary(value, plain=encoding == "error")


@cli.command()
@click.argument("workflow_id")
@_json_option
@_db_option
def history(workflow_id: str, as_json: bool, db: str) -> None:
    """Show a workflow's event log: one row per recorded event."""
    with _client(db) as engine:
        events = engine.history(workflow_id)
    if as_json:
        _print_json([event.model_dump(mode="json") for event in events])
        return
    days = {_when(event.created)[:10] for event in events}
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
        style = "red" if event.kind.endswith(("failed", "cancelled")) else _KIND_STYLE.get(
            event.kind.partition(".")[0], "")
        table.add_row(str(event.position), str(event.call), Text(event.kind, style=style),
                      event.name, event.args,
                      _event_value(event.kind, event.encoding, event.value, cut),
                      _when(event.created)[cut:])
    _console().print(table)


# -- control --------------------------------------------------------------------


@cli.command("signal")
@click.argument("workflow_id")
@click.argument("name")
@click.argument("payload", required=False)
@_db_option
def signal_command(workflow_id: str, name: str, payload: str | None, db: str) -> None:
    """Send signal NAME to a workflow, with an optional JSON payload.

    \b
    durable signal order-A-17 approved true
    durable signal order-A-17 note '"ship it"'
    """
    value = None
    if payload is not None:
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as error:
            raise CliError(
                f"the payload {payload!r} is not valid JSON ({error.msg}, column {error.colno}); "
                "quote a string as '\"text\"'"
            ) from None
    with _client(db) as engine:
        engine.send_signal(workflow_id, name, value)
    click.echo(f"sent signal {name!r} to {workflow_id}")


@cli.command()
@click.argument("workflow_id")
@_db_option
def pause(workflow_id: str, db: str) -> None:
    """Pause a workflow: no step runs until `durable resume`."""
    with _client(db) as engine:
        engine.pause(workflow_id)
        status = engine.handle(workflow_id).status()
    if status == Status.PAUSED:
        click.echo(f"{workflow_id} is PAUSED; `durable resume {workflow_id}` continues it")
    else:
        click.echo(f"{workflow_id} is {status}: it pauses at its next recorded call")


@cli.command()
@click.argument("workflow_id")
@_db_option
def resume(workflow_id: str, db: str) -> None:
    """Resume a paused workflow; it continues by replay on a worker."""
    with _client(db) as engine:
        engine.resume(workflow_id)
        status = engine.handle(workflow_id).status()
    click.echo(f"{workflow_id} resumed ({status}); a worker that imports its module runs it")


@cli.command()
@click.argument("workflow_id")
@_db_option
def cancel(workflow_id: str, db: str) -> None:
    """Cancel a workflow at its next recorded call (at once if it waits)."""
    with _client(db) as engine:
        engine.cancel(workflow_id)
        status = engine.handle(workflow_id).status()
    if status == Status.CANCELLED:
        click.echo(f"{workflow_id} is CANCELLED")
    else:
        click.echo(f"cancel requested: {workflow_id} ({status}) ends as CANCELLED at its next "
                   "call on a worker, after its compensations")


# -- code against history ---------------------------------------------------------


def _replay(engine: Engine, workflow_id: str) -> tuple[str, str]:
    """Replay one workflow: ``("ok" | "diverged" | "unknown", what to tell)``."""
    try:
        value = engine.replay(workflow_id)
    except NonDeterminismError as error:
        return "diverged", str(error)
    except UnknownWorkflow as error:
        return "unknown", str(error)
    except WorkflowFailed as error:
        return "ok", f"replays to its recorded failure: {error.error}"
    status = engine.handle(workflow_id).status()
    if status == Status.SUCCESS:
        return "ok", f"replays to its recorded result: {_summary(value, limit=200)}"
    return "ok", f"every recorded call matches ({status})"


@cli.command()
@click.argument("workflow_id")
@_modules_option
@_db_option
def replay(workflow_id: str, modules: tuple[str, ...], db: str) -> None:
    """Replay a workflow's log against the current code, running no step."""
    import_modules(modules)
    with _client(db) as engine:
        outcome, message = _replay(engine, workflow_id)
    if outcome == "unknown":
        raise CliError(f"{message} (pass its module with -m MODULE)")
    if outcome == "diverged":
        click.echo(f"diverged: {message}")
        sys.exit(EXIT_DIVERGED)
    click.echo(f"{workflow_id}: {message}")


@cli.command()
@click.argument("workflow_id")
@click.option("--at", type=click.IntRange(min=0), required=True,
              help="Keep recorded calls 1..N; the rest runs anew.")
@click.option("--id", "new_id", help="Id of the new workflow (default: ID-fork-XXXX).")
@_db_option
def fork(workflow_id: str, at: int, new_id: str | None, db: str) -> None:
    """Start a new workflow that keeps the first N calls of ID's history."""
    with _client(db) as engine:
        handle = engine.fork(workflow_id, at=at, new_id=new_id)
    click.echo(f"forked {workflow_id} at call #{at} as {handle.workflow_id}; "
               "a worker that imports its module runs it")


@cli.command()
@click.argument("modules", nargs=-1, required=True)
@_db_option
def check(modules: tuple[str, ...], db: str) -> None:
    """Replay every unfinished workflow against MODULES: a gate before deploying them.

    Exits 1 if any workflow diverged from its history or is not defined by MODULES.
    """
    import_modules(modules)
    counts = {"ok": 0, "diverged": 0, "unknown": 0}
    console = _console()
    with _client(db) as engine:
        unfinished = [info for info in engine.list_workflows(limit=sys.maxsize)
                      if not info.status.finished]
        for info in reversed(unfinished):  # oldest first
            outcome, message = _replay(engine, info.workflow_id)
            counts[outcome] += 1
            label = {"ok": "[green]ok[/]", "diverged": "[bold red]DIVERGED[/]",
                     "unknown": "[bold red]UNKNOWN[/]"}[outcome]
            line = Text.from_markup(f"{label}  ")
            line.append(f"{info.workflow_id} ({info.name})")
            if outcome != "ok":
                line.append(f"\n    {message}", style="red")
            console.print(line)
    bad = counts["diverged"] + counts["unknown"]
    console.print(
        f"checked {len(unfinished)} unfinished workflow(s): {counts['ok']} ok, "
        f"{counts['diverged']} diverged, {counts['unknown']} not defined by these modules"
    )
    if bad:
        sys.exit(EXIT_DIVERGED)


# -- running --------------------------------------------------------------------


@cli.command()
@click.argument("modules", nargs=-1, required=True)
@click.option("--workers", default=8, show_default=True, type=click.IntRange(min=1),
              help="Workflows run at once.")
@click.option("--shutdown-timeout", default=10.0, show_default=True,
              type=click.FloatRange(min=0),
              help="Seconds to let running workflows reach their next call on shutdown.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@_db_option
def worker(modules: tuple[str, ...], workers: int, shutdown_timeout: float, log_level: str,
           db: str) -> None:
    """Run the workflows defined in MODULES until SIGTERM or Ctrl-C.

    On shutdown, running workflows stop at their next recorded call and are released,
    so the next worker (or engine) on the database resumes them. A second signal
    exits at once; the workflows are then recovered as after a crash.
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from durable.registry import find_workflow

    names = _workflow_names(import_modules(modules))
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            click.echo("second signal: exiting now", err=True)
            os._exit(128 + signum)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        engine = Engine(db, workers=workers).open()
        try:
            unknown = sorted({i.name for i in engine.list_workflows(limit=sys.maxsize)
                              if not i.status.finished and find_workflow(i.name) is None})
            click.echo(f"durable worker (pid {os.getpid()}) on {db}: {workers} workers; "
                       f"workflows: {', '.join(names) or 'none'}", err=True)
            if unknown:
                click.echo(f"warning: unfinished workflows of other modules are left alone: "
                           f"{', '.join(unknown)}", err=True)
            while not stop.wait(0.2):
                pass
            click.echo("stopping: running workflows stop at their next call and are released",
                       err=True)
        finally:
            engine.close(timeout=shutdown_timeout)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("worker stopped; unfinished workflows resume on the next worker", err=True)
    _exit_past_abandoned_steps()


def _exit_past_abandoned_steps() -> None:
    """Exit now if steps still run past the shutdown timeout.

    At exit, Python joins the threads of every thread pool (the engine's ``durable-*``
    threads), so it would wait for as long as those steps take. Their workflows were
    released and their results can no longer be recorded: those steps run again on the
    next worker (at least once, as after a crash).
    """
    deadline = time.monotonic() + 1.0  # idle pool threads take a moment to wind down
    engine_threads = [t for t in threading.enumerate() if t.name.startswith("durable-")]
    for thread in engine_threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    lingering = [t for t in engine_threads if t.is_alive()]
    if lingering:
        click.echo(f"abandoned {len(lingering)} step(s) still running; they run again "
                   "when their workflows resume", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@cli.command()
@click.option("--db", default="durable-demo.db", show_default=True,
              type=click.Path(dir_okay=False),
              help="A new file for the demo (an old demo database there is replaced).")
def demo(db: str) -> None:
    """Run a workflow, kill -9 its process mid-way, resume it in a new process."""
    from durable.demo import run_demo

    sys.exit(run_demo(db, _console(piped_width=110)))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; another address exposes the dashboard beyond "
              "this machine (its token still guards it).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--read-only", is_flag=True, help="Show everything, allow no action.")
@_modules_option
@_db_option
def ui(host: str, port: int, read_only: bool, modules: tuple[str, ...], db: str) -> None:
    """Serve the dashboard: overview, workflows, timelines, graphs, inspector, /metrics."""
    try:
        import uvicorn  # noqa: F401  (the ui extra)

        from durable.ui import serve
    except ImportError as error:
        raise CliError(f"durable ui needs the ui extra ({error.name} is missing): "
                       "pip install 'durable[ui]'") from error
    import_modules(modules)
    if not os.path.exists(db):
        raise CliError(f"no database at {db!r}; pass --db PATH or set $DURABLE_DB")
    serve(db, host=host, port=port, read_only=read_only, modules=modules, announce=click.echo)
