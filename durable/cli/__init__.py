"""The ``durable`` command line: look at, steer and run the workflows of one database.

::

    durable list [--status S] [--name N]     workflows, newest first
    durable show ID                          state, what it waits for, result or error
    durable history ID                       its event log as a table
    durable signal ID NAME [JSON]            send a signal from any process
    durable pause|resume|cancel ID           or every match: --status S / --name N [--yes]
    durable start MODULE:WORKFLOW [JSON]...  start one (--id ID, --queue Q, --priority P)
    durable retry ID                         run a failed workflow again as a new run
    durable prune --older-than 30d           delete finished workflows and their history
    durable schedules                        schedules and their next due times
    durable replay ID -m MODULE              replay the log against the current code
    durable replay --from-file F -m MODULE   the same for a history from `durable export`
    durable replay ID -m MODULE --break-at N stop in pdb after call N (nothing runs)
    durable export ID > run.json             the history as versioned JSON
    durable fork ID --at N                   keep calls 1..N, run the rest anew
    durable check MODULE...                  replay every unfinished workflow (pre-deploy gate)
    durable worker MODULE... [--workers N]   run workflows until SIGTERM / Ctrl-C
             [--log-level L] [--log-format text|json]
    durable demo                             kill -9 a workflow mid-way and watch it resume

Every command takes ``--db PATH`` (default ``durable.db``, or ``$DURABLE_DB``). A
MODULE is a dotted module name (importable from the current directory) or a file
path. Errors of durable print as one line, ``error: ...``, with exit code 2;
``check`` and ``replay`` exit with 1 when the code diverged from a history.
"""

from __future__ import annotations

from durable.cli import (  # noqa: F401  (they register their commands)
    control,
    dashboard,
    inspect,
    operate,
)
from durable.cli.common import CliError, cli, import_modules, main

__all__ = ["CliError", "cli", "import_modules", "main"]
