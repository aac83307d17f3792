"""What every command shares: the click group, options, the client engine, formatting
and importing the user's workflow modules."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from durable.engine import Engine
from durable.errors import DurableError
from durable.store.backend import is_url

#: ``check`` and ``replay`` found a divergence (or a workflow the code no longer defines).
EXIT_DIVERGED = 1
#: A usage error or a DurableError: nothing was checked or changed.
EXIT_ERROR = 2

_STATUS_STYLE = {
    "ENQUEUED": "dim", "PENDING": "dim", "RUNNING": "cyan", "RETRYING": "yellow",
    "WAITING": "yellow", "PAUSED": "magenta", "DIVERGED": "bold red", "SUCCESS": "green",
    "FAILURE": "bold red", "CANCELLED": "dim", "SKIPPED": "dim",
}
KIND_STYLE = {"step": "green", "signal": "magenta", "sleep": "blue", "child": "cyan",
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
            raise CliError(with_db(str(error), ctx.meta.get(_DB_GIVEN))) from error


_DB_GIVEN = "durable.db_given"
_COMMAND_IN_TEXT = re.compile(r"`(durable [^`]*)`")


def with_db(text: str, db: str | None = None) -> str:
    """``text`` with ``--db PATH`` added to every `durable ...` command it suggests, when
    the user gave ``--db`` on the command line (so the hint works as printed).

    ``db`` defaults to the ``--db`` of the command being run.
    """
    if db is None:
        ctx = click.get_current_context(silent=True)
        db = ctx.meta.get(_DB_GIVEN) if ctx is not None else None
    if not db:
        return text
    option = f" --db {shlex.quote(db)}"
    return _COMMAND_IN_TEXT.sub(
        lambda m: f"`{m.group(1)}`" if "--db" in m.group(1) else f"`{m.group(1)}{option}`",
        text)


def echo(text: str, err: bool = False) -> None:
    """``click.echo`` of a message whose `durable ...` hints get the given ``--db``."""
    click.echo(with_db(text), err=err)


def _remember_db(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if ctx.get_parameter_source("db") == click.core.ParameterSource.COMMANDLINE:
        ctx.meta[_DB_GIVEN] = value
    return value


def db_option(fn: F) -> F:
    return click.option(
        "--db", default="durable.db", envvar="DURABLE_DB", show_default=True,
        show_envvar=True, type=str,
        help="The SQLite database file, or a PostgreSQL URL (postgresql://user@host/db).",
        callback=_remember_db,
    )(fn)


def json_option(fn: F) -> F:
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
def client(db: str, read_only: bool = False, create: bool = False) -> Iterator[Engine]:
    """An engine that only reads, starts and signals, on a database that must exist
    (unless ``create``: `durable start` may be the first to use a database).

    ``read_only``: for the commands that only inspect (list, show, history, check,
    replay): a SQLite file is opened ``mode=ro``, never migrated or switched to WAL.
    """
    if not create and not is_url(db) and not os.path.exists(db):
        # Opening would create an empty database: `durable list` in the wrong directory
        # must say so instead of leaving a stray durable.db behind.
        raise CliError(f"no database at {db!r}; pass --db PATH or set $DURABLE_DB")
    engine = Engine(db, workers=0, read_only=read_only)
    try:
        yield engine
    finally:
        engine.close()


def make_console(piped_width: int = 160) -> Console:
    # Piped output keeps whole rows on one line (for grep), instead of rich's 80 columns.
    sized = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(width=None if sized else piped_width, highlight=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def format_when(moment: datetime | float | None) -> str:
    """A moment in local time, to the millisecond."""
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def summarize(value: Any, limit: int = 60, plain: bool = False) -> str:
    if value is None:
        return ""
    if plain and isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def styled_status(status: str) -> Text:
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


def workflow_names(modules: Iterable[ModuleType]) -> list[str]:
    from durable.runtime.registry import Workflow

    return sorted({value.name for module in modules for value in vars(module).values()
                   if isinstance(value, Workflow)})


def modules_option(fn: F) -> F:
    return click.option(
        "-m", "--module", "modules", multiple=True, metavar="MODULE",
        help="Module (dotted name or file) defining the workflow; repeatable.",
    )(fn)


# -- reading --------------------------------------------------------------------
