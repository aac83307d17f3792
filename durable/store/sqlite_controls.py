"""The SQLite store's controls from outside a run: pause, resume, cancel, terminate, and
the pending control a running workflow reads (see :class:`durable.store.Store`)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from durable.store import NewEvent, WorkflowRow
from durable.store.sqlite_commit import SELECT_WORKFLOW, insert_events
from durable.store.sqlite_ops import PAUSED_ENQUEUED, cancel_not_started

_UNFINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
_AT_REST = f"owner IS NULL AND control IS NULL AND status <> 'PAUSED' AND {_UNFINISHED}"


class SQLiteControls:
    """Mixed into :class:`durable.store.sqlite.SQLiteStore`."""

    path: str

    def _writing(self, what: str, sync: bool = True
                 ) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def request_pause(self, workflow_id: str, now: float) -> None:
        with self._writing(f"pausing workflow {workflow_id!r}") as conn:
            # At rest (nobody runs it): paused at once. Running: it pauses itself at its
            # next recorded call. A pending cancel (or a compensation) wins over a pause.
            conn.execute(  # still enqueued: resume puts it back in its queue
                "UPDATE workflows SET status = 'PAUSED', wake_at = NULL, waiting = ?, "
                "updated = ? WHERE workflow_id = ? AND status = 'ENQUEUED'",
                (PAUSED_ENQUEUED, now, workflow_id),
            )
            conn.execute(
                "UPDATE workflows SET status = 'PAUSED', wake_at = NULL, waiting = 'resume', "
                f"wait_signal = NULL, updated = ? WHERE workflow_id = ? AND {_AT_REST}",
                (now, workflow_id),
            )
            conn.execute(
                "UPDATE workflows SET control = 'pause', updated = ? WHERE workflow_id = ? "
                f"AND owner IS NOT NULL AND control IS NULL AND {_UNFINISHED}",
                (now, workflow_id),
            )

    def resume(self, workflow_id: str, now: float) -> None:
        with self._writing(f"resuming workflow {workflow_id!r}") as conn:
            # Set aside (diverged, unknown code): runnable now, its old error gone at once,
            # so result() does not raise it again before an engine claims the workflow.
            conn.execute(
                "UPDATE workflows SET status = 'RUNNING', error = NULL, wake_at = ?, "
                "waiting = NULL, updated = ? WHERE workflow_id = ? AND owner IS NULL AND "
                f"(status = 'DIVERGED' OR error IS NOT NULL) AND {_UNFINISHED}",
                (now, now, workflow_id),
            )
            # A pause still pending is withdrawn; a pending cancel is left alone.
            conn.execute(
                "UPDATE workflows SET control = NULL, updated = ? WHERE workflow_id = ? "
                "AND control = 'pause'",
                (now, workflow_id),
            )
            conn.execute(  # paused while enqueued: back in its queue (or to its start time)
                "UPDATE workflows SET status = 'ENQUEUED', waiting = NULL, updated = ?, "
                "wake_at = CASE WHEN queue IS NULL THEN COALESCE(start_at, ?) END "
                "WHERE workflow_id = ? AND status = 'PAUSED' AND waiting = ?",
                (now, now, workflow_id, PAUSED_ENQUEUED),
            )
            conn.execute(
                "UPDATE workflows SET status = 'RUNNING', wake_at = ?, waiting = NULL, "
                "updated = ? WHERE workflow_id = ? AND status = 'PAUSED'",
                (now, now, workflow_id),
            )

    def request_cancel(self, workflow_id: str, now: float) -> None:
        with self._writing(f"cancelling workflow {workflow_id!r}") as conn:
            if cancel_not_started(conn, workflow_id, now):
                return  # it had not started: it ended CANCELLED here and never runs
            # A waiting or paused workflow is woken at once; a running one unwinds at its
            # next call. One that is already compensating goes on doing so.
            conn.execute(
                "UPDATE workflows SET control = 'cancel', wake_at = ?, updated = ? "
                f"WHERE workflow_id = ? AND {_UNFINISHED} "
                "AND (control IS NULL OR control = 'pause')",
                (now, now, workflow_id),
            )

    def terminate(self, workflow_id: str, now: float, status: str, encoding: str, payload: Any,
                  only_diverged: bool = False) -> WorkflowRow | None:
        kind = {"FAILURE": "workflow.failed", "CANCELLED": "workflow.cancelled"}[status]
        with self._writing(f"terminating workflow {workflow_id!r}") as conn:
            found = conn.execute(f"{SELECT_WORKFLOW} WHERE workflow_id = ?",
                                 (workflow_id,)).fetchone()
            if found is None:
                return None
            row = WorkflowRow(*found)
            if row.finished or (only_diverged and row.status != "DIVERGED"):
                return None
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(position), -1) FROM events WHERE workflow_id = ?",
                (workflow_id,),
            ).fetchone()
            # Taking the next position fences the owner twice over: it no longer owns the
            # row, and its next event would collide with this one.
            insert_events(conn, workflow_id, row.run,
                          [NewEvent(last + 1, 0, kind, row.name, "", "", encoding, payload)], now)
            conn.execute(
                "UPDATE workflows SET status = ?, owner = NULL, lease_until = NULL, "
                "wake_at = NULL, wait_signal = NULL, waiting = NULL, control = 'terminated', "
                "output_encoding = ?, output = ?, error = NULL, updated = ? "
                "WHERE workflow_id = ?",
                (status, encoding, payload, now, workflow_id),
            )
            if row.parent_id is not None:
                conn.execute(
                    "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND owner IS NULL "
                    "AND status = 'WAITING'",
                    (now, row.parent_id),
                )
        return row

    # -- the log ----------------------------------------------------------------

    def control(self, workflow_id: str) -> str | None:
        rows = self._read("SELECT control FROM workflows WHERE workflow_id = ?", (workflow_id,))
        return rows[0][0] if rows else None
