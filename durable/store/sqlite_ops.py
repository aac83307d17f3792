"""The SQLite store's operations on many workflows: bulk and queued starts, dequeueing
within queue limits, schedules, retry as a new run, and pruning (see
:class:`durable.store.Store`). The SQL is plain (no SQLite-only functions), so that the
PostgreSQL store can follow it statement by statement."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from durable.errors import DuplicateWorkflow, WorkflowConflict, WorkflowFinished
from durable.store import (
    SCHEDULE_COLUMNS,
    WORKFLOW_COLUMNS,
    NewEvent,
    QueueLimits,
    ScheduleRow,
    WorkflowRow,
)
from durable.store.rows import retryable
from durable.store.sqlite_commit import SELECT_WORKFLOW, insert_events

_TERMINAL = "('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
#: The statuses of a workflow that left its queue and has not finished: it holds a slot.
_ACTIVE = "('PENDING', 'RUNNING', 'RETRYING', 'WAITING', 'PAUSED', 'DIVERGED')"
#: ``waiting`` of a workflow paused while still enqueued: resume puts it back in its queue.
PAUSED_ENQUEUED = "resume (still enqueued)"
_INSERT_WORKFLOW = (
    f"INSERT INTO workflows ({', '.join(WORKFLOW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(WORKFLOW_COLUMNS))}) ON CONFLICT (workflow_id) DO NOTHING"
)
_SELECT_SCHEDULE = f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM schedules"


def _chunks(items: list[str], size: int = 400) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class SQLiteOps:
    """Mixed into :class:`durable.store.sqlite.SQLiteStore`."""

    path: str

    def _writing(self, what: str, sync: bool = True
                 ) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    # -- starts -----------------------------------------------------------------------

    def create_workflows(
        self, items: list[tuple[WorkflowRow, list[NewEvent]]],
        signal: tuple[str, str, Any] | None = None, now: float | None = None,
    ) -> list[WorkflowRow | None]:
        results: list[WorkflowRow | None] = []
        with self._writing(f"starting {len(items)} workflow(s)") as conn:
            for row, events in items:
                results.append(_insert(conn, row, events))
            if signal is not None:
                _signal_with_start(conn, items[0][0], results[0], signal,
                                   time.time() if now is None else now)
        return results

    def fire_schedule(
        self, name: str, due: float, next_at: float,
        items: list[tuple[WorkflowRow, list[NewEvent]]], now: float | None = None,
    ) -> bool:
        with self._writing(f"firing schedule {name!r}") as conn:
            moved = conn.execute(
                "UPDATE schedules SET next_at = ?, updated = ? WHERE name = ? AND next_at = ?",
                (next_at, time.time() if now is None else now, name, due),
            ).rowcount
            if not moved:
                return False  # another process fired this tick (or it was unscheduled)
            for row, events in items:
                _insert(conn, row, events)  # an id that exists: that tick already started
        return True

    # -- dequeueing -------------------------------------------------------------------

    def claim_queued(
        self, owner: str, now: float, lease_until: float, limit: int, queues: list[QueueLimits]
    ) -> list[WorkflowRow]:
        claimed: list[WorkflowRow] = []
        if not queues or limit <= 0:
            return claimed
        # Reads first: an idle poll, or one whose queues are all at their limits, must not
        # take the write lock from other processes. The write transaction counts again.
        names = [q.name for q in queues]
        if not self._read(  # idle: one read, however many queues are declared
            f"SELECT 1 FROM workflows WHERE status = 'ENQUEUED' AND queue IN "
            f"({', '.join('?' * len(names))}) AND (start_at IS NULL OR start_at <= ?) LIMIT 1",
            (*names, now)):
            return claimed
        ready = [q for q in queues if len(queues) == 1 or self._read(
            "SELECT 1 FROM workflows WHERE status = 'ENQUEUED' AND queue = ? "
            "AND (start_at IS NULL OR start_at <= ?) LIMIT 1", (q.name, now))]

        def read_one(sql: str, params: tuple[Any, ...]) -> Any:
            return self._read(sql, params)[0]

        if all(_room(read_one, q, owner, now, limit) <= 0 for q in ready):
            return claimed
        with self._writing("dequeueing workflows", sync=False) as conn:
            def write_one(sql: str, params: tuple[Any, ...]) -> Any:
                return conn.execute(sql, params).fetchone()

            for queue in ready:
                room = _room(write_one, queue, owner, now, limit - len(claimed))
                if room <= 0:
                    continue
                order = "priority, created, workflow_id" if queue.priority else (
                    "created, workflow_id")
                rows = conn.execute(
                    f"{SELECT_WORKFLOW} WHERE status = 'ENQUEUED' AND queue = ? "
                    f"AND (start_at IS NULL OR start_at <= ?) ORDER BY {order} LIMIT ?",
                    (queue.name, now, room),
                ).fetchall()
                for values in rows:
                    row = WorkflowRow(*values)
                    conn.execute(
                        "UPDATE workflows SET owner = ?, lease_until = ?, status = 'RUNNING', "
                        "wake_at = ?, dequeued = ?, updated = ? WHERE workflow_id = ? "
                        "AND status = 'ENQUEUED'",
                        (owner, lease_until, now, now, now, row.workflow_id),
                    )
                    row.owner, row.lease_until, row.status = owner, lease_until, "RUNNING"
                    row.wake_at = row.dequeued = now
                    claimed.append(row)
                if len(claimed) >= limit:
                    break
        return claimed

    # -- retry ------------------------------------------------------------------------

    def new_run(
        self, workflow_id: str, from_run: int, events: list[NewEvent], now: float,
        deadline: float | None,
    ) -> WorkflowRow | None:
        with self._writing(f"retrying workflow {workflow_id!r}") as conn:
            found = conn.execute(
                "SELECT status, run, owner, error, queue, dedup_id FROM workflows "
                "WHERE workflow_id = ?", (workflow_id,),
            ).fetchone()
            if found is None or found[1] != from_run:
                return None
            status, _, owner, error, queue, dedup_id = found
            if not retryable(status, owner, error):
                return None
            try:
                insert_events(conn, workflow_id, from_run + 1, events, now)
                conn.execute(
                    "UPDATE workflows SET run = ?, status = 'PENDING', output_encoding = NULL, "
                    "output = NULL, error = NULL, owner = NULL, lease_until = NULL, "
                    "wake_at = ?, wait_signal = NULL, waiting = NULL, control = NULL, "
                    "recoveries = 0, progress = 0, deadline = ?, updated = ? "
                    "WHERE workflow_id = ?",
                    (from_run + 1, now, deadline, now, workflow_id),
                )
            except sqlite3.IntegrityError as error:
                holder = None if dedup_id is None else _dedup_holder(conn, queue, dedup_id)
                if holder is not None:  # its dedup_id was taken while it had ended
                    raise DuplicateWorkflow(queue, dedup_id, holder) from error
                return None  # a position taken: someone else wrote this log meanwhile
            values = conn.execute(
                f"{SELECT_WORKFLOW} WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()
        return WorkflowRow(*values)

    # -- prune ------------------------------------------------------------------------

    def prune(self, finished_before: float, statuses: list[str], limit: int) -> int:
        marks = ", ".join("?" * len(statuses))
        with self._writing("pruning finished workflows") as conn:
            # Kept: every ancestor of an unfinished workflow, and every finished child
            # whose parent has not finished (it may not have read the child's end yet).
            ids = [r[0] for r in conn.execute(
                f"""WITH RECURSIVE held (id) AS (
                    SELECT parent_id FROM workflows
                    WHERE parent_id IS NOT NULL AND status NOT IN {_TERMINAL}
                    UNION
                    SELECT w.parent_id FROM workflows w JOIN held h ON w.workflow_id = h.id
                    WHERE w.parent_id IS NOT NULL
                )
                SELECT workflow_id FROM workflows
                WHERE status IN ({marks}) AND updated < ?
                AND workflow_id NOT IN (SELECT id FROM held)
                AND NOT EXISTS (SELECT 1 FROM workflows p WHERE p.workflow_id = workflows.parent_id
                                AND p.status NOT IN {_TERMINAL})
                ORDER BY updated LIMIT ?""",
                (*statuses, finished_before, limit),
            )]
            if not ids:
                return 0
            # The trigger on events lets a DELETE through only for a finished workflow
            # named in `pruning`; the names are removed in the same transaction.
            conn.executemany("INSERT INTO pruning (workflow_id) VALUES (?)",
                             [(i,) for i in ids])
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                for table in ("events", "signals", "published", "workflows"):
                    conn.execute(f"DELETE FROM {table} WHERE workflow_id IN ({marks})", chunk)
            conn.execute("DELETE FROM pruning")
        return len(ids)

    # -- schedules --------------------------------------------------------------------

    def put_schedule(self, row: ScheduleRow) -> None:
        values = tuple(getattr(row, c) for c in SCHEDULE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in SCHEDULE_COLUMNS
                            if c not in ("name", "next_at", "created"))
        with self._writing(f"storing schedule {row.name!r}") as conn:
            conn.execute(
                f"INSERT INTO schedules ({', '.join(SCHEDULE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))}) "
                f"ON CONFLICT (name) DO UPDATE SET {updates}, next_at = CASE "
                "WHEN schedules.cron = excluded.cron AND schedules.timezone = excluded.timezone "
                "THEN schedules.next_at ELSE excluded.next_at END",
                values,
            )

    def delete_schedule(self, name: str) -> bool:
        with self._writing(f"removing schedule {name!r}") as conn:
            return conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0

    def schedules(self) -> list[ScheduleRow]:
        rows = [ScheduleRow(*r) for r in self._read(f"{_SELECT_SCHEDULE} ORDER BY name")]
        for row in rows:
            row.declared = bool(row.declared)
        return rows


def _room(one: Callable[[str, tuple[Any, ...]], Any], queue: QueueLimits, owner: str,
          now: float, room: int) -> int:
    """How many more workflows of ``queue`` may be dequeued now, at most ``room``;
    ``one(sql, params)`` runs a query and returns its one row."""
    if queue.concurrency is not None:
        (active,) = one(
            f"SELECT COUNT(*) FROM workflows WHERE queue = ? AND status IN {_ACTIVE} "
            "AND dequeued IS NOT NULL", (queue.name,),
        )
        room = min(room, queue.concurrency - active)
    if queue.worker_concurrency is not None and room > 0:
        (mine,) = one(
            f"SELECT COUNT(*) FROM workflows WHERE queue = ? AND status IN {_ACTIVE} "
            "AND owner = ?", (queue.name, owner),
        )
        room = min(room, queue.worker_concurrency - mine)
    if queue.rate_count is not None and queue.rate_per is not None and room > 0:
        (recent,) = one(
            "SELECT COUNT(*) FROM workflows WHERE queue = ? AND dequeued > ?",
            (queue.name, now - queue.rate_per),
        )
        room = min(room, queue.rate_count - recent)
    return room


def _dedup_holder(conn: sqlite3.Connection, queue: str | None, dedup_id: str) -> str | None:
    found = conn.execute(
        f"SELECT workflow_id FROM workflows WHERE queue = ? AND dedup_id = ? "
        f"AND status NOT IN {_TERMINAL}", (queue, dedup_id),
    ).fetchone()
    return None if found is None else str(found[0])


def _insert(conn: sqlite3.Connection, row: WorkflowRow, events: list[NewEvent]
            ) -> WorkflowRow | None:
    """Insert one workflow and its first events: None, or the row that holds the id."""
    if row.dedup_id is not None:
        holder = _dedup_holder(conn, row.queue, row.dedup_id)
        if holder is not None and holder != row.workflow_id:
            raise DuplicateWorkflow(row.queue or "", row.dedup_id, holder)
    try:
        inserted = conn.execute(
            _INSERT_WORKFLOW, tuple(getattr(row, c) for c in WORKFLOW_COLUMNS)
        ).rowcount
    except sqlite3.IntegrityError as error:  # the dedup index (another store's writer won)
        holder = _dedup_holder(conn, row.queue, row.dedup_id or "")
        raise DuplicateWorkflow(row.queue or "", row.dedup_id or "", holder or "?") from error
    if inserted == 0:
        found = conn.execute(f"{SELECT_WORKFLOW} WHERE workflow_id = ?",
                             (row.workflow_id,)).fetchone()
        return WorkflowRow(*found)
    insert_events(conn, row.workflow_id, row.run, events, row.created)
    return None


def _signal_with_start(conn: sqlite3.Connection, row: WorkflowRow, existing: WorkflowRow | None,
                       signal: tuple[str, str, Any], now: float) -> None:
    if existing is not None and existing.name != row.name:  # no signal to the wrong workflow
        raise WorkflowConflict(row.workflow_id, existing.name, row.name)
    if existing is not None and existing.finished:
        raise WorkflowFinished(row.workflow_id, existing.status, f"signal {signal[0]!r} to")
    conn.execute(
        "INSERT INTO signals (workflow_id, name, encoding, payload, sent) VALUES (?, ?, ?, ?, ?)",
        (row.workflow_id, *signal, now),
    )
    conn.execute(
        "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND wait_signal = ? "
        "AND owner IS NULL AND status = 'WAITING'",
        (now, row.workflow_id, signal[0]),
    )


# Never started: ENQUEUED, paused while enqueued, or PENDING with nothing recorded yet
# (no worker took it).
_NOT_STARTED = (
    f"(status = 'ENQUEUED' OR (status = 'PAUSED' AND waiting = '{PAUSED_ENQUEUED}') "
    "OR (status = 'PENDING' AND owner IS NULL AND NOT EXISTS (SELECT 1 FROM events e "
    "WHERE e.workflow_id = workflows.workflow_id AND e.call > 0)))"
)


def cancel_not_started(conn: sqlite3.Connection, workflow_id: str, now: float) -> bool:
    """End a workflow that has not started as CANCELLED, with its closing event, and wake
    a parent that waits for it; inside the caller's transaction. False if it started:
    not even its code before its first recorded call may run after a cancel."""
    found = conn.execute(
        f"SELECT run, name, parent_id FROM workflows WHERE workflow_id = ? AND {_NOT_STARTED}",
        (workflow_id,),
    ).fetchone()
    if found is None:
        return False
    run, name, parent_id = found
    conn.execute(
        "UPDATE workflows SET status = 'CANCELLED', wake_at = NULL, waiting = NULL, "
        "control = NULL, output_encoding = 'json', output = NULL, updated = ? "
        "WHERE workflow_id = ?", (now, workflow_id),
    )
    (last,) = conn.execute(
        "SELECT COALESCE(MAX(position), -1) FROM events WHERE workflow_id = ?", (workflow_id,)
    ).fetchone()
    conn.execute(
        "INSERT INTO events (workflow_id, position, run, call, kind, name, digest, args, "
        "encoding, payload, created) VALUES (?, ?, ?, 0, 'workflow.cancelled', ?, '', '', "
        "'json', NULL, ?)",
        (workflow_id, last + 1, run, name, now),
    )
    conn.execute(  # a parent waiting for this child reads its end
        "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND owner IS NULL "
        "AND status = 'WAITING'", (now, parent_id),
    )
    return True
