"""The PostgreSQL store's operations on many workflows: bulk and queued starts,
dequeueing within queue limits, schedules, retry as a new run, and pruning (see
:class:`durable.store.Store`). They follow :mod:`durable.store.sqlite_ops` statement by
statement; where SQLite serializes every write, PostgreSQL takes row locks, and a
transaction-scoped advisory lock per queue around the count of its dequeued workflows
(so that a global concurrency limit holds across processes under READ COMMITTED)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from durable.errors import DuplicateWorkflow, WorkflowConflict, WorkflowFinished
from durable.store import (
    SCHEDULE_COLUMNS,
    NewEvent,
    QueueLimits,
    ScheduleRow,
    WorkflowRow,
)
from durable.store.postgres_commit import Sql, insert_events, row_values, workflow_row
from durable.store.postgres_schema import tag, untag
from durable.store.rows import retryable

T = TypeVar("T")
_TERMINAL = "('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
#: The statuses of a workflow that left its queue and has not finished: it holds a slot.
_ACTIVE = "('PENDING', 'RUNNING', 'RETRYING', 'WAITING', 'PAUSED', 'DIVERGED')"
_READY = "status = 'ENQUEUED' AND (start_at IS NULL OR start_at <= %s)"
_INPUT = SCHEDULE_COLUMNS.index("input")


class PostgresOps:
    """Mixed into :class:`durable.store.postgres.PostgresStore`."""

    if TYPE_CHECKING:
        _sql: Sql

        def _read(self, operation: str, query: str,
                  params: tuple[Any, ...] = ()) -> list[Any]: ...

        def _write(self, operation: str, fn: Callable[[psycopg.Cursor[Any]], T],
                   retry: bool = True, notify: bool = False, sync: bool = True) -> T: ...

    # -- starts -----------------------------------------------------------------------

    def create_workflows(
        self, items: list[tuple[WorkflowRow, list[NewEvent]]],
        signal: tuple[str, str, Any] | None = None, now: float | None = None,
    ) -> list[WorkflowRow | None]:
        sql = self._sql

        def create(cur: psycopg.Cursor[Any]) -> list[WorkflowRow | None]:
            results = [_insert(cur, sql, row, events) for row, events in items]
            if signal is not None:
                _signal_with_start(cur, sql, items[0][0], results[0], signal,
                                   time.time() if now is None else now)
            return results

        # Not retried: a commit whose answer was lost would report the ids as taken.
        return self._write(f"starting {len(items)} workflow(s)", create, retry=False,
                           notify=True)

    def fire_schedule(
        self, name: str, due: float, next_at: float,
        items: list[tuple[WorkflowRow, list[NewEvent]]], now: float | None = None,
    ) -> bool:
        sql = self._sql

        def fire(cur: psycopg.Cursor[Any]) -> bool:
            cur.execute(f"UPDATE {sql.schema}.schedules SET next_at = %s, updated = %s "
                        "WHERE name = %s AND next_at = %s",
                        (next_at, time.time() if now is None else now, name, due))
            if cur.rowcount == 0:
                return False  # another process fired this tick (or it was unscheduled)
            for row, events in items:
                _insert(cur, sql, row, events)  # an id that exists: that tick already started
            return True

        # Retried safely: a second try finds next_at moved and does nothing.
        return self._write(f"firing schedule {name!r}", fire, notify=True)

    # -- dequeueing -------------------------------------------------------------------

    def claim_queued(
        self, owner: str, now: float, lease_until: float, limit: int, queues: list[QueueLimits]
    ) -> list[WorkflowRow]:
        if not queues or limit <= 0:
            return []
        s = self._sql.schema
        # Reads first: an idle poll, or one whose queues are all at their limits, takes
        # no lock. The write transaction counts again under the queues' locks.
        names = [q.name for q in queues]
        if not self._read("reading queues", f"SELECT 1 FROM {s}.workflows WHERE {_READY} "
                          "AND queue = ANY(%s) LIMIT 1", (now, names)):
            return []
        ready = [q for q in queues if len(queues) == 1 or self._read(
            "reading queues", f"SELECT 1 FROM {s}.workflows WHERE {_READY} AND queue = %s "
            "LIMIT 1", (now, q.name))]

        def read_one(query: str, params: tuple[Any, ...]) -> Any:
            return self._read("reading queues", query, params)[0]

        if all(_room(read_one, s, q, owner, now, limit) <= 0 for q in ready):
            return []

        def dequeue(cur: psycopg.Cursor[Any]) -> list[WorkflowRow]:
            # One lock per queue, taken in name order (no deadlock between processes):
            # whoever counts a queue's dequeued workflows next sees what this one took.
            for queue_name in sorted({q.name for q in ready}):
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                            (f"durable queue {s} {queue_name}",))

            def write_one(query: str, params: tuple[Any, ...]) -> Any:
                return cur.execute(query, params).fetchone()

            claimed: list[WorkflowRow] = []
            for queue in ready:
                room = _room(write_one, s, queue, owner, now, limit - len(claimed))
                if room <= 0:
                    continue
                order = "priority, created, workflow_id" if queue.priority else (
                    "created, workflow_id")
                rows = cur.execute(
                    f"{self._sql.select_workflow} WHERE {_READY} AND queue = %s "
                    f"ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED",
                    (now, queue.name, room)).fetchall()
                for values in rows:
                    row = workflow_row(values)
                    cur.execute(
                        f"UPDATE {s}.workflows SET owner = %s, lease_until = %s, "
                        "status = 'RUNNING', wake_at = %s, dequeued = %s, updated = %s "
                        "WHERE workflow_id = %s AND status = 'ENQUEUED'",
                        (owner, lease_until, now, now, now, row.workflow_id))
                    row.owner, row.lease_until, row.status = owner, lease_until, "RUNNING"
                    row.wake_at = row.dequeued = now
                    claimed.append(row)
                if len(claimed) >= limit:
                    break
            return claimed

        return self._write("dequeueing workflows", dequeue, retry=False, sync=False)

    # -- retry ------------------------------------------------------------------------

    def new_run(
        self, workflow_id: str, from_run: int, events: list[NewEvent], now: float,
        deadline: float | None,
    ) -> WorkflowRow | None:
        sql, s = self._sql, self._sql.schema

        def retry(cur: psycopg.Cursor[Any]) -> WorkflowRow | None:
            found = cur.execute(
                f"SELECT status, run, owner, error, queue, dedup_id FROM {s}.workflows "
                "WHERE workflow_id = %s FOR UPDATE", (workflow_id,)).fetchone()
            if found is None or found[1] != from_run:
                return None
            status, _, owner, error, queue, dedup_id = found
            if not retryable(status, owner, error):
                return None
            try:
                with cur.connection.transaction():  # a savepoint: a conflict undoes it
                    insert_events(cur, sql, workflow_id, from_run + 1, events, now)
                    cur.execute(
                        f"UPDATE {s}.workflows SET run = %s, status = 'PENDING', "
                        "output_encoding = NULL, output = NULL, error = NULL, owner = NULL, "
                        "lease_until = NULL, wake_at = %s, wait_signal = NULL, waiting = NULL, "
                        "control = NULL, recoveries = 0, progress = 0, deadline = %s, "
                        "updated = %s WHERE workflow_id = %s",
                        (from_run + 1, now, deadline, now, workflow_id))
            except psycopg.errors.UniqueViolation as error:
                holder = None if dedup_id is None else _dedup_holder(cur, sql, queue, dedup_id)
                if holder is not None:  # its dedup_id was taken while it had ended
                    raise DuplicateWorkflow(queue, dedup_id, holder) from error
                return None  # a position taken: someone else wrote this log meanwhile
            values = cur.execute(f"{sql.select_workflow} WHERE workflow_id = %s",
                                 (workflow_id,)).fetchone()
            return None if values is None else workflow_row(values)

        return self._write(f"retrying workflow {workflow_id!r}", retry, retry=False,
                           notify=True)

    # -- prune ------------------------------------------------------------------------

    def prune(self, finished_before: float, statuses: list[str], limit: int) -> int:
        s = self._sql.schema

        def prune(cur: psycopg.Cursor[Any]) -> int:
            # Kept: every ancestor of an unfinished workflow, and every finished child
            # whose parent has not finished (it may not have read the child's end yet).
            # The rows are locked: a retry of one waits, then finds it gone.
            ids = [r[0] for r in cur.execute(
                f"""WITH RECURSIVE held (id) AS (
                    SELECT parent_id FROM {s}.workflows
                    WHERE parent_id IS NOT NULL AND status NOT IN {_TERMINAL}
                    UNION
                    SELECT w.parent_id FROM {s}.workflows w JOIN held h ON w.workflow_id = h.id
                    WHERE w.parent_id IS NOT NULL
                )
                SELECT workflow_id FROM {s}.workflows x
                WHERE status = ANY(%s) AND updated < %s
                AND workflow_id NOT IN (SELECT id FROM held)
                AND NOT EXISTS (SELECT 1 FROM {s}.workflows p WHERE p.workflow_id = x.parent_id
                                AND p.status NOT IN {_TERMINAL})
                ORDER BY updated LIMIT %s FOR UPDATE OF x SKIP LOCKED""",
                (statuses, finished_before, limit)).fetchall()]
            if not ids:
                return 0
            # The trigger on events lets a DELETE through only for a finished workflow
            # named in `pruning`; the names are removed in the same transaction.
            cur.executemany(f"INSERT INTO {s}.pruning (workflow_id) VALUES (%s)",
                            [(i,) for i in ids])
            for table in ("events", "signals", "published", "workflows"):
                cur.execute(f"DELETE FROM {s}.{table} WHERE workflow_id = ANY(%s)", (ids,))
            cur.execute(f"DELETE FROM {s}.pruning")
            return len(ids)

        return self._write("pruning finished workflows", prune, retry=False)

    # -- schedules --------------------------------------------------------------------

    def put_schedule(self, row: ScheduleRow) -> None:
        values = tuple(tag(getattr(row, c)) if c == "input" else getattr(row, c)
                       for c in SCHEDULE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in SCHEDULE_COLUMNS
                            if c not in ("name", "next_at", "created"))
        s = self._sql.schema
        self._write(f"storing schedule {row.name!r}", lambda cur: cur.execute(
            f"INSERT INTO {s}.schedules AS old ({', '.join(SCHEDULE_COLUMNS)}) "
            f"VALUES ({', '.join(['%s'] * len(SCHEDULE_COLUMNS))}) "
            f"ON CONFLICT (name) DO UPDATE SET {updates}, next_at = CASE "
            "WHEN old.cron = excluded.cron AND old.timezone = excluded.timezone "
            "THEN old.next_at ELSE excluded.next_at END", values), notify=True)

    def delete_schedule(self, name: str) -> bool:
        def delete(cur: psycopg.Cursor[Any]) -> bool:
            cur.execute(f"DELETE FROM {self._sql.schema}.schedules WHERE name = %s", (name,))
            return cur.rowcount > 0

        return self._write(f"removing schedule {name!r}", delete)

    def schedules(self) -> list[ScheduleRow]:
        rows = self._read("reading schedules", f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM "
                          f"{self._sql.schema}.schedules ORDER BY name")
        found = []
        for values in rows:
            values = list(values)
            values[_INPUT] = untag(values[_INPUT])
            row = ScheduleRow(*values)
            row.declared = bool(row.declared)
            found.append(row)
        return found


def _room(one: Callable[[str, tuple[Any, ...]], Any], s: str, queue: QueueLimits, owner: str,
          now: float, room: int) -> int:
    """How many more workflows of ``queue`` may be dequeued now, at most ``room``;
    ``one(sql, params)`` runs a query and returns its one row."""
    if queue.concurrency is not None:
        (active,) = one(
            f"SELECT COUNT(*) FROM {s}.workflows WHERE queue = %s AND status IN {_ACTIVE} "
            "AND dequeued IS NOT NULL", (queue.name,))
        room = min(room, queue.concurrency - active)
    if queue.worker_concurrency is not None and room > 0:
        (mine,) = one(
            f"SELECT COUNT(*) FROM {s}.workflows WHERE queue = %s AND status IN {_ACTIVE} "
            "AND owner = %s", (queue.name, owner))
        room = min(room, queue.worker_concurrency - mine)
    if queue.rate_count is not None and queue.rate_per is not None and room > 0:
        (recent,) = one(
            f"SELECT COUNT(*) FROM {s}.workflows WHERE queue = %s AND dequeued > %s",
            (queue.name, now - queue.rate_per))
        room = min(room, queue.rate_count - recent)
    return int(room)


def _dedup_holder(cur: psycopg.Cursor[Any], sql: Sql, queue: str | None,
                  dedup_id: str) -> str | None:
    found = cur.execute(
        f"SELECT workflow_id FROM {sql.schema}.workflows WHERE queue = %s "
        f"AND dedup_id = %s AND status NOT IN {_TERMINAL}", (queue, dedup_id)).fetchone()
    return None if found is None else str(found[0])


def _insert(cur: psycopg.Cursor[Any], sql: Sql, row: WorkflowRow, events: list[NewEvent]
            ) -> WorkflowRow | None:
    """Insert one workflow and its first events: None, or the row that holds the id."""
    if row.dedup_id is not None:
        holder = _dedup_holder(cur, sql, row.queue, row.dedup_id)
        if holder is not None and holder != row.workflow_id:
            raise DuplicateWorkflow(row.queue or "", row.dedup_id, holder)
    try:
        with cur.connection.transaction():  # a savepoint: the dedup index may refuse it
            cur.execute(sql.create, row_values(row))
            inserted = cur.rowcount
    except psycopg.errors.UniqueViolation as error:  # another process's start won
        holder = _dedup_holder(cur, sql, row.queue, row.dedup_id or "")
        raise DuplicateWorkflow(row.queue or "", row.dedup_id or "", holder or "?") from error
    if inserted == 0:
        found = cur.execute(f"{sql.select_workflow} WHERE workflow_id = %s",
                            (row.workflow_id,)).fetchone()
        if found is not None:
            return workflow_row(found)
    insert_events(cur, sql, row.workflow_id, row.run, events, row.created)
    return None


def _signal_with_start(cur: psycopg.Cursor[Any], sql: Sql, row: WorkflowRow,
                       existing: WorkflowRow | None, signal: tuple[str, str, Any],
                       now: float) -> None:
    if existing is not None and existing.name != row.name:  # no signal to the wrong workflow
        raise WorkflowConflict(row.workflow_id, existing.name, row.name)
    if existing is not None and existing.finished:
        raise WorkflowFinished(row.workflow_id, existing.status, f"signal {signal[0]!r} to")
    name, encoding, payload = signal
    cur.execute(sql.lock_row, (row.workflow_id,))  # see Sql.lock_row
    cur.execute(f"INSERT INTO {sql.schema}.signals (workflow_id, name, encoding, payload, "
                "sent) VALUES (%s, %s, %s, %s, %s)",
                (row.workflow_id, name, encoding, tag(payload), now))
    cur.execute(f"UPDATE {sql.schema}.workflows SET wake_at = %s WHERE workflow_id = %s "
                "AND wait_signal = %s AND owner IS NULL AND status = 'WAITING'",
                (now, row.workflow_id, name))
