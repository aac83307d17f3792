"""What the PostgreSQL store does for callers outside a workflow's run: pause, resume,
cancel, terminate, leases given up or ended, signals and published values (a part of
:class:`durable.store.postgres.PostgresStore`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from durable.store import NewEvent, WorkflowRow
from durable.store.postgres_commit import Sql, insert_events, workflow_row
from durable.store.postgres_schema import tag, untag

T = TypeVar("T")
_UNFINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
_AT_REST = f"owner IS NULL AND control IS NULL AND status <> 'PAUSED' AND {_UNFINISHED}"
#: ``waiting`` of a workflow paused while still enqueued: resume puts it back in its queue
#: (the same text as the SQLite store's, so that both read each other's meaning).
PAUSED_ENQUEUED = "resume (still enqueued)"
# Never started: ENQUEUED, paused while enqueued, or PENDING with nothing recorded yet.
_NOT_STARTED = (
    "(status = 'ENQUEUED' OR (status = 'PAUSED' AND waiting = %(paused)s) "
    "OR (status = 'PENDING' AND owner IS NULL AND NOT EXISTS (SELECT 1 FROM {s}.events e "
    "WHERE e.workflow_id = w.workflow_id AND e.call > 0)))"
)


class Outside:
    """Controls, leases, signals and published values; the store supplies the
    transactions."""

    _sql: Sql

    def _read(self, operation: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def _write(self, operation: str, fn: Callable[[psycopg.Cursor[Any]], T],
               retry: bool = True, notify: bool = False) -> T:
        raise NotImplementedError

    # -- leases -------------------------------------------------------------------

    def owners(self) -> list[str]:
        """Every owner that holds a workflow now."""
        rows = self._read("listing owners", f"SELECT DISTINCT owner FROM "
                          f"{self._sql.schema}.workflows WHERE owner <> ''")
        return [r[0] for r in rows]

    def expire(self, owner: str) -> None:
        """End the leases of ``owner`` at once (its process is known to be gone)."""
        self._write("ending the leases of a gone owner", lambda cur: cur.execute(
            f"UPDATE {self._sql.schema}.workflows SET lease_until = 0 WHERE owner = %s",
            (owner,)), notify=True)

    def retry_set_aside(self, now: float | None = None) -> None:
        self._write("retrying workflows set aside", lambda cur: cur.execute(
            f"UPDATE {self._sql.schema}.workflows SET wake_at = %s WHERE owner IS NULL "
            f"AND (error IS NOT NULL OR control = 'cancel') AND {_UNFINISHED}",
            (time.time() if now is None else now,)), notify=True)

    def release(self, owner: str, workflow_id: str | None = None,
                now: float | None = None) -> None:
        s = self._sql.schema
        if workflow_id is None:
            self._write("releasing workflows", lambda cur: cur.execute(
                f"UPDATE {s}.workflows SET owner = NULL, wake_at = COALESCE(wake_at, %s) "
                "WHERE owner = %s", (time.time() if now is None else now, owner)), notify=True)
        else:
            self._write("releasing a workflow", lambda cur: cur.execute(
                f"UPDATE {s}.workflows SET owner = NULL WHERE owner = %s AND workflow_id = %s",
                (owner, workflow_id)), notify=True)

    def retry_later(self, owner: str, workflow_id: str, retry_at: float, why: str) -> None:
        self._write(f"releasing workflow {workflow_id!r} for a retry", lambda cur: cur.execute(
            f"UPDATE {self._sql.schema}.workflows SET owner = NULL, lease_until = NULL, "
            "wake_at = %s, waiting = %s, updated = %s WHERE owner = %s AND workflow_id = %s",
            (retry_at, why, time.time(), owner, workflow_id)), notify=True)

    # -- controls from outside ----------------------------------------------------

    def control(self, workflow_id: str) -> str | None:
        rows = self._read("reading a control request", f"SELECT control FROM "
                          f"{self._sql.schema}.workflows WHERE workflow_id = %s", (workflow_id,))
        return rows[0][0] if rows else None

    def request_pause(self, workflow_id: str, now: float) -> None:
        s = self._sql.schema

        def pause(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(self._sql.lock_row, (workflow_id,))  # the statements see one row
            cur.execute(  # still enqueued: resume puts it back in its queue
                f"UPDATE {s}.workflows SET status = 'PAUSED', wake_at = NULL, waiting = %s, "
                "updated = %s WHERE workflow_id = %s AND status = 'ENQUEUED'",
                (PAUSED_ENQUEUED, now, workflow_id))
            # At rest (nobody runs it): paused at once. Running: it pauses itself at its
            # next recorded call. A pending cancel (or a compensation) wins over a pause.
            cur.execute(
                f"UPDATE {s}.workflows SET status = 'PAUSED', wake_at = NULL, "
                f"waiting = 'resume', wait_signal = NULL, updated = %s WHERE workflow_id = %s "
                f"AND {_AT_REST}", (now, workflow_id))
            cur.execute(
                f"UPDATE {s}.workflows SET control = 'pause', updated = %s WHERE workflow_id "
                f"= %s AND owner IS NOT NULL AND control IS NULL AND {_UNFINISHED}",
                (now, workflow_id))

        self._write("pausing a workflow", pause, notify=True)

    def resume(self, workflow_id: str, now: float) -> None:
        s = self._sql.schema

        def resume(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(self._sql.lock_row, (workflow_id,))
            # Set aside (diverged, unknown code): runnable now, its old error gone at once,
            # so result() does not raise it again before an engine claims the workflow.
            cur.execute(
                f"UPDATE {s}.workflows SET status = 'RUNNING', error = NULL, wake_at = %s, "
                "waiting = NULL, updated = %s WHERE workflow_id = %s AND owner IS NULL AND "
                f"(status = 'DIVERGED' OR error IS NOT NULL) AND {_UNFINISHED}",
                (now, now, workflow_id))
            # A pause still pending is withdrawn; a pending cancel is left alone.
            cur.execute(f"UPDATE {s}.workflows SET control = NULL, updated = %s "
                        "WHERE workflow_id = %s AND control = 'pause'", (now, workflow_id))
            cur.execute(  # paused while enqueued: back in its queue (or to its start time)
                f"UPDATE {s}.workflows SET status = 'ENQUEUED', waiting = NULL, updated = %s, "
                "wake_at = CASE WHEN queue IS NULL THEN COALESCE(start_at, %s) END "
                "WHERE workflow_id = %s AND status = 'PAUSED' AND waiting = %s",
                (now, now, workflow_id, PAUSED_ENQUEUED))
            cur.execute(f"UPDATE {s}.workflows SET status = 'RUNNING', wake_at = %s, "
                        "waiting = NULL, updated = %s WHERE workflow_id = %s "
                        "AND status = 'PAUSED'", (now, now, workflow_id))

        self._write("resuming a workflow", resume, notify=True)

    def request_cancel(self, workflow_id: str, now: float) -> None:
        s = self._sql.schema

        def cancel(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(self._sql.lock_row, (workflow_id,))
            if cancel_not_started(cur, self._sql, workflow_id, now):
                return  # it had not started: it ended CANCELLED here and never runs
            # A waiting or paused workflow is woken at once; a running one unwinds at its
            # next call. One that is already compensating goes on doing so.
            cur.execute(
                f"UPDATE {s}.workflows SET control = 'cancel', wake_at = %s, updated = %s "
                f"WHERE workflow_id = %s AND {_UNFINISHED} "
                "AND (control IS NULL OR control = 'pause')", (now, now, workflow_id))

        self._write(f"cancelling workflow {workflow_id!r}", cancel, notify=True)

    def terminate(self, workflow_id: str, now: float, status: str, encoding: str, payload: Any,
                  only_diverged: bool = False) -> WorkflowRow | None:
        kind = {"FAILURE": "workflow.failed", "CANCELLED": "workflow.cancelled"}[status]
        s = self._sql.schema

        def terminate(cur: psycopg.Cursor[Any]) -> WorkflowRow | None:
            found = cur.execute(f"{self._sql.select_workflow} WHERE workflow_id = %s "
                                "FOR UPDATE", (workflow_id,)).fetchone()
            if found is None:
                return None
            row = workflow_row(found)
            if row.finished or (only_diverged and row.status != "DIVERGED"):
                return None
            (last,) = cur.execute(f"SELECT COALESCE(MAX(position), -1) FROM {s}.events "
                                  "WHERE workflow_id = %s", (workflow_id,)).fetchone() or (-1,)
            # Taking the next position fences the owner twice over: it no longer owns the
            # row, and its next event would collide with this one.
            insert_events(cur, self._sql, workflow_id, row.run,
                          [NewEvent(last + 1, 0, kind, row.name, "", "", encoding, payload)],
                          now)
            cur.execute(
                f"UPDATE {s}.workflows SET status = %s, owner = NULL, lease_until = NULL, "
                "wake_at = NULL, wait_signal = NULL, waiting = NULL, control = 'terminated', "
                "output_encoding = %s, output = %s, error = NULL, updated = %s "
                "WHERE workflow_id = %s", (status, encoding, tag(payload), now, workflow_id))
            if row.parent_id is not None:
                cur.execute(self._sql.lock_row, (row.parent_id,))
                cur.execute(self._sql.wake, (now, row.parent_id))
            return row

        # Not retried: its event must not be written twice.
        return self._write(f"terminating workflow {workflow_id!r}", terminate, retry=False,
                           notify=True)

    # -- signals and published events -------------------------------------------

    def next_signal(self, workflow_id: str, name: str) -> tuple[int, str, Any] | None:
        rows = self._read(
            "reading signals",
            f"SELECT id, encoding, payload FROM {self._sql.schema}.signals WHERE workflow_id "
            "= %s AND name = %s AND consumed_position IS NULL ORDER BY id LIMIT 1",
            (workflow_id, name))
        return (rows[0][0], rows[0][1], untag(rows[0][2])) if rows else None

    def send_signal(self, workflow_id: str, name: str, encoding: str, payload: Any,
                    now: float | None = None) -> None:
        s = self._sql.schema
        at = time.time() if now is None else now

        def send(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(self._sql.lock_row, (workflow_id,))  # see Sql.lock_row
            cur.execute(f"INSERT INTO {s}.signals (workflow_id, name, encoding, payload, sent) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (workflow_id, name, encoding, tag(payload), at))
            # Armed in the same transaction as the waiter's check: no wake-up is missed.
            cur.execute(f"UPDATE {s}.workflows SET wake_at = %s WHERE workflow_id = %s AND "
                        "wait_signal = %s AND owner IS NULL AND status = 'WAITING'",
                        (at, workflow_id, name))

        # Not retried: a signal whose commit's answer was lost might be delivered twice.
        self._write(f"sending signal {name!r} to workflow {workflow_id!r}", send, retry=False,
                    notify=True)

    def published(self, workflow_id: str, key: str) -> tuple[str, Any] | None:
        rows = self._read("reading a published value",
                          f"SELECT encoding, payload FROM {self._sql.schema}.published "
                          "WHERE workflow_id = %s AND key = %s", (workflow_id, key))
        return (rows[0][0], untag(rows[0][1])) if rows else None

    def signals(self, workflow_id: str) -> list[tuple[Any, ...]]:
        """Every signal sent to a workflow: ``(id, name, sent, consumed_position)``."""
        rows = self._read("reading signals",
                          f"SELECT id, name, sent, consumed_position FROM {self._sql.schema}"
                          ".signals WHERE workflow_id = %s ORDER BY id", (workflow_id,))
        return [tuple(r) for r in rows]


def cancel_not_started(cur: psycopg.Cursor[Any], sql: Sql, workflow_id: str,
                       now: float) -> bool:
    """End a workflow that has not started as CANCELLED, with its closing event, and wake
    a parent that waits for it; inside the caller's transaction (the row locked). False
    if it started: not even its code before its first recorded call may run after a
    cancel."""
    s = sql.schema
    found = cur.execute(
        f"SELECT run, name, parent_id FROM {s}.workflows w WHERE workflow_id = %(id)s AND "
        + _NOT_STARTED.replace("{s}", s), {"id": workflow_id, "paused": PAUSED_ENQUEUED},
    ).fetchone()
    if found is None:
        return False
    run, name, parent_id = found
    cur.execute(
        f"UPDATE {s}.workflows SET status = 'CANCELLED', wake_at = NULL, waiting = NULL, "
        "control = NULL, output_encoding = 'json', output = NULL, updated = %s "
        "WHERE workflow_id = %s", (now, workflow_id))
    (last,) = cur.execute(f"SELECT COALESCE(MAX(position), -1) FROM {s}.events "
                          "WHERE workflow_id = %s", (workflow_id,)).fetchone() or (-1,)
    insert_events(cur, sql, workflow_id, run,
                  [NewEvent(last + 1, 0, "workflow.cancelled", name, "", "", "json", None)], now)
    if parent_id is not None:  # a parent waiting for this child reads its end
        cur.execute(sql.lock_row, (parent_id,))
        cur.execute(sql.wake, (now, parent_id))
    return True
