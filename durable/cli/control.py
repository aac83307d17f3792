"""Commands that steer and run: signal, pause, resume, cancel, replay, fork, check,
worker, demo."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, ModuleType

import click
from rich.text import Text

from durable.cli import logs
from durable.cli.common import (
    EXIT_DIVERGED,
    CliError,
    cli,
    client,
    db_option,
    echo,
    import_modules,
    make_console,
    modules_option,
    summarize,
    workflow_names,
)
from durable.cli.operate import bulk_options, control_command
from durable.engine import Engine, history
from durable.errors import NonDeterminismError, UnknownWorkflow, WorkflowFailed
from durable.runtime.registry import Workflow
from durable.status import Status


@cli.command("signal")
@click.argument("workflow_id")
@click.argument("name")
@click.argument("payload", required=False)
@db_option
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
    with client(db) as engine:
        engine.send_signal(workflow_id, name, value)
    click.echo(f"sent signal {name!r} to {workflow_id}")


def _pause_one(engine: Engine, workflow_id: str) -> str:
    engine.pause(workflow_id)
    status = engine.handle(workflow_id).status()
    if status == Status.PAUSED:
        return f"{workflow_id} is PAUSED; `durable resume {workflow_id}` continues it"
    return f"{workflow_id} is {status}: it pauses at its next recorded call"


def _resume_one(engine: Engine, workflow_id: str) -> str:
    engine.resume(workflow_id)
    status = engine.handle(workflow_id).status()
    return (f"{workflow_id} resumed ({status}); a worker that imports its module runs it "
            "(`durable worker MODULE`)")


def _cancel_one(engine: Engine, workflow_id: str) -> str:
    engine.cancel(workflow_id)
    status = engine.handle(workflow_id).status()
    if status == Status.CANCELLED:
        return f"{workflow_id} is CANCELLED"
    return (f"cancel requested: {workflow_id} ({status}) ends as CANCELLED at its next "
            "call on a worker, after its compensations")


@cli.command()
@bulk_options
@db_option
def pause(workflow_id: str | None, status: str | None, name: str | None, yes: bool,
          db: str) -> None:
    """Pause a workflow (or every match of --status/--name): no step runs until resume."""
    control_command("pause", _pause_one, workflow_id, status, name, yes, db)


@cli.command()
@bulk_options
@db_option
def resume(workflow_id: str | None, status: str | None, name: str | None, yes: bool,
           db: str) -> None:
    """Resume a paused workflow (or every match); it continues by replay on a worker."""
    control_command("resume", _resume_one, workflow_id, status, name, yes, db)


@cli.command()
@bulk_options
@db_option
def cancel(workflow_id: str | None, status: str | None, name: str | None, yes: bool,
           db: str) -> None:
    """Cancel a workflow (or every match) at its next recorded call (at once if it waits
    or is still enqueued)."""
    control_command("cancel", _cancel_one, workflow_id, status, name, yes, db)


@cli.command()
@click.argument("workflow_id")
@click.option("--reason", default="terminated from the command line", show_default=True,
              help="Recorded in the workflow's error.")
@db_option
def terminate(workflow_id: str, reason: str, db: str) -> None:
    """End a workflow at once, without replaying it: no compensation runs.

    It ends as FAILURE with a WorkflowTerminated error; its attached children are
    terminated too. Works on any unfinished workflow, DIVERGED ones included.
    """
    with client(db) as engine:
        engine.terminate(workflow_id, reason)
    click.echo(f"{workflow_id} is terminated (FAILURE: WorkflowTerminated: {reason})")


# -- code against history ---------------------------------------------------------


def _replay(engine: Engine, workflow_id: str, break_at: int | None = None
            ) -> tuple[str, str]:
    """Replay one workflow: ``("ok" | "diverged" | "unknown", what to tell)``."""
    try:
        value = engine.replay(workflow_id, break_at=break_at)
    except NonDeterminismError as error:
        return "diverged", str(error)
    except UnknownWorkflow as error:
        return "unknown", str(error)
    except WorkflowFailed as error:
        return "ok", f"replays to its recorded failure: {error.error}"
    status = engine.handle(workflow_id).status()
    if status == Status.SUCCESS:
        return "ok", f"replays to its recorded result: {summarize(value, limit=200)}"
    return "ok", f"every recorded call matches ({status})"


@cli.command()
@click.argument("workflow_id", required=False)
@click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False),
              help="Replay a history written by `durable export` (no database needed).")
@click.option("--break-at", "break_at", type=click.IntRange(min=1), metavar="N",
              help="Stop in pdb in the workflow's code once call N has its recorded value.")
@modules_option
@db_option
def replay(workflow_id: str | None, from_file: str | None, break_at: int | None,
           modules: tuple[str, ...], db: str) -> None:
    """Replay a workflow's log against the current code, running no step.

    \b
    durable replay order-A-17 -m shop
    durable replay --from-file run.json -m shop
    durable replay order-A-17 -m shop --break-at 3     # pdb after call #3
    """
    if (workflow_id is None) == (from_file is None):
        raise CliError("give a workflow ID or --from-file FILE (one of them)")
    import_modules(modules)
    if from_file is not None:
        data = history.parse(Path(from_file).read_text(encoding="utf-8"))
        with (tempfile.TemporaryDirectory(prefix="durable-replay-") as folder,
              Engine(os.path.join(folder, "replay.db"), workers=0) as engine):
            workflow_id = history.load(engine, data).workflow_id
            outcome, message = _replay(engine, workflow_id, break_at)
    else:
        assert workflow_id is not None
        with client(db, read_only=True) as engine:
            outcome, message = _replay(engine, workflow_id, break_at)
    if outcome == "unknown":
        raise CliError(f"{message} (pass its module with -m MODULE)")
    if outcome == "diverged":
        click.echo(f"diverged: {message}")
        sys.exit(EXIT_DIVERGED)
    click.echo(f"{workflow_id}: {message}")


@cli.command("export")
@click.argument("workflow_id")
@db_option
def export_command(workflow_id: str, db: str) -> None:
    """Print a workflow's history as JSON (format "durable.history", version 1).

    \b
    durable export order-A-17 > run.json
    durable replay --from-file run.json -m shop     # anywhere, no database
    """
    with client(db) as engine:
        click.echo(engine.export(workflow_id))


@cli.command()
@click.argument("workflow_id")
@click.option("--at", type=click.IntRange(min=0), required=True,
              help="Keep recorded calls 1..N; the rest runs anew.")
@click.option("--id", "new_id", help="Id of the new workflow (default: ID-fork-XXXX).")
@db_option
def fork(workflow_id: str, at: int, new_id: str | None, db: str) -> None:
    """Start a new workflow that keeps the first N calls of ID's history."""
    warnings = _Collect()
    logger = logging.getLogger("durable")
    logger.addHandler(warnings)
    try:
        with client(db) as engine:
            handle = engine.fork(workflow_id, at=at, new_id=new_id)
    finally:
        logger.removeHandler(warnings)
    for message in warnings.messages:
        click.echo(f"warning: {message}", err=True)
    echo(f"forked {workflow_id} at call #{at} as {handle.workflow_id}; a worker that imports "
         f"its module runs it (`durable worker MODULE`); `durable show {handle.workflow_id}` "
         "follows it")


class _Collect(logging.Handler):
    """Keeps the warnings the library logs during one command, to print them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@cli.command()
@click.argument("modules", nargs=-1, required=True)
@db_option
def check(modules: tuple[str, ...], db: str) -> None:
    """Replay every unfinished workflow against MODULES: a gate before deploying them.

    Exits 1 if any workflow diverged from its history or is not defined by MODULES.
    """
    import_modules(modules)
    counts = {"ok": 0, "diverged": 0, "unknown": 0}
    console = make_console()
    with client(db, read_only=True) as engine:
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
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="INFO: a line per workflow start, suspension, resumption, step retry, "
              "divergence, failure and end; DEBUG adds a line per step.")
@click.option("--log-format", default="text", show_default=True,
              type=click.Choice(["text", "json"]),
              help="json: one JSON object per line, with workflow_id, workflow_name, call "
              "and event fields.")
@db_option
def worker(modules: tuple[str, ...], workers: int, shutdown_timeout: float, log_level: str,
           log_format: str, db: str) -> None:
    """Run the workflows defined in MODULES until SIGTERM or Ctrl-C.

    On shutdown, running workflows stop at their next recorded call and are released,
    so the next worker (or engine) on the database resumes them. A second signal
    exits at once; the workflows are then recovered as after a crash.
    """
    logs.configure(log_level, log_format)
    from durable.runtime.queues import QUEUES
    from durable.runtime.registry import find_workflow
    from durable.runtime.schedules import SCHEDULES

    imported = import_modules(modules)
    names = workflow_names(imported)
    if not names:
        click.echo(f"warning: {', '.join(modules)} define(s) no @durable.workflow: this worker "
                   "has nothing to run; pass the module(s) that define your workflows",
                   err=True)
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
            if QUEUES or SCHEDULES:
                click.echo(f"queues: {', '.join(QUEUES) or 'none'}; declared schedules: "
                           f"{', '.join(SCHEDULES) or 'none'}", err=True)
            for hint in _main_hints(unknown, imported):
                click.echo(hint, err=True)
            unknown = [n for n in unknown if not n.startswith("__main__.")]
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


def _main_hints(unknown: list[str], imported: list[ModuleType]) -> list[str]:
    """What to do about unfinished workflows recorded under ``__main__.``: they were
    started by a script run directly (``python shop.py``), and a worker that imports the
    script knows its functions under the module's own name."""
    hints = []
    for name in unknown:
        if not name.startswith("__main__."):
            continue
        qualname = name.removeprefix("__main__.")
        found = [m for m in imported if isinstance(getattr(m, qualname, None), Workflow)]
        if found:
            module = found[0].__name__
            hints.append(
                f"warning: unfinished workflows named {name!r} were started by a script run "
                f"directly (python {found[0].__file__}), so they are recorded under module "
                f"__main__; this worker imports that file as module {module!r} and knows the "
                f"function as {module}.{qualname}, so it cannot run them. Fix: give the "
                "workflow and its steps explicit names in that file, then restart this "
                f"worker: @durable.workflow(name=\"{name}\") and @durable.step(name="
                "\"__main__.<step>\") finish the runs already recorded; a stable name such as "
                f"@durable.workflow(name=\"{module}.{qualname}\") serves new runs."
            )
        else:
            hints.append(
                f"warning: unfinished workflows named {name!r} were started by a script run "
                "directly, so they are recorded under module __main__; no module given to "
                f"this worker defines {qualname}. Give the workflow a stable "
                f"@durable.workflow(name=...) in that script and pass the script to "
                "`durable worker`."
            )
    return hints


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

    sys.exit(run_demo(db, make_console(piped_width=110)))
