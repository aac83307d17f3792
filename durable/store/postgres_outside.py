"""What the PostgreSQL store does for callers outside a workflow's run: pause, resume,
cancel, signals and published values (a part of
:class:`durable.store.postgres.PostgresStore`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from durable.store.postgres_commit import Sql
from durable.store.postgres_schema import tag, untag

T = TypeVar("T")
_UNFINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
_AT_REST = f"owner IS NULL AND control IS NULL AND status <> 'PAUSED' AND {_UNFINISHED}"


class Outside:
    """Controls, signals and published values; the store supplies the transactions."""

    _sql: Sql

    def _read(self, operation: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def _write(self, operation: str, fn: Callable[[psycopg.Cursor[Any]], T],
               retry: bool = True, notify: bool = False) -> T:
        raise NotImplementedError

    # -- controls from outside ----------------------------------------------------

    def request_pause(self, workflow_id: str, now: float) -> None:
        s = self._sql.schema

        def pause(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(self._sql.lock_row, (workflow_id,))  # both statements see one row
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
            # A pause still pending is withdrawn; a pending cancel is left alone.
            cur.execute(f"UPDATE {s}.workflows SET control = NULL, updated = %s "
                        "WHERE workflow_id = %s AND control = 'pause'", (now, workflow_id))
            cur.execute(f"UPDATE {s}.workflows SET status = 'RUNNING', wake_at = %s, "
                        "waiting = NULL, updated = %s WHERE workflow_id = %s "
                        "AND status = 'PAUSED'", (now, now, workflow_id))

        self._write("resuming a workflow", resume, notify=True)

    def request_cancel(self, workflow_id: str, now: float) -> None:
        # A waiting or paused workflow is woken at once; a running one unwinds at its next
        # call. One that is already compensating goes on doing so.
        self._write("cancelling a workflow", lambda cur: cur.execute(
            f"UPDATE {self._sql.schema}.workflows SET control = 'cancel', wake_at = %s, "
            f"updated = %s WHERE workflow_id = %s AND {_UNFINISHED} "
            "AND (control IS NULL OR control = 'pause')", (now, now, workflow_id)),
            notify=True)

    # -- signals and published events -------------------------------------------

    def next_signal(self, workflow_id: str, name: str) -> tuple[int, str, Any] | None:
        rows = self._read(
            "reading signals",
            f"SELECT id, encoding, payload FROM {self._sql.schema}.signals WHERE workflow_id "
            "= %s AND name = %s AND consumed_position IS NULL ORDER BY id LIMIT 1",
            (workflow_id, name))
        return (rows[0][0], rows[0][1], untag(rows[0][2])) if rows else None

    def send_signal(self, workflow_id: str, name: str, encoding: str, payload: Any) -> None:
        now, s = time.time(), self._sql.schema

        def send(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(self._sql.lock_row, (workflow_id,))  # see Sql.lock_row
            cur.execute(f"INSERT INTO {s}.signals (workflow_id, name, encoding, payload, sent) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (workflow_id, name, encoding, tag(payload), now))
            # Armed in the same transaction as the waiter's check: no wake-up is missed.
            cur.execute(f"UPDATE {s}.workflows SET wake_at = %s WHERE workflow_id = %s AND "
                        "wait_signal = %s AND owner IS NULL AND status = 'WAITING'",
                        (now, workflow_id, name))

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
