"""The writes of the PostgreSQL store's group commit: many workflows' appends and starts
in one transaction, a savepoint around each request that may fail so that it fails alone
(see :meth:`durable.store.postgres.PostgresStore.append`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from durable.store import WORKFLOW_COLUMNS, Fenced, NewEvent, WorkflowRow
from durable.store.postgres_schema import tag, untag
from durable.store.rows import AppendRequest, CreateRequest, update_under_control

_PAYLOAD_COLUMNS = {"input", "output"}


def row_values(row: WorkflowRow) -> tuple[Any, ...]:
    """A workflow row as SQL parameters, in WORKFLOW_COLUMNS order."""
    return tuple(tag(getattr(row, c)) if c in _PAYLOAD_COLUMNS else getattr(row, c)
                 for c in WORKFLOW_COLUMNS)


_INPUT, _OUTPUT = WORKFLOW_COLUMNS.index("input"), WORKFLOW_COLUMNS.index("output")


def workflow_row(values: Any) -> WorkflowRow:
    """A WorkflowRow from a row of :func:`select_workflow` columns."""
    values = list(values)
    values[_INPUT], values[_OUTPUT] = untag(values[_INPUT]), untag(values[_OUTPUT])
    return WorkflowRow(*values)


class Sql:
    """The statements of one schema, formatted once."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.schema = s
        columns = ", ".join(WORKFLOW_COLUMNS)
        self.select_workflow = f"SELECT {columns} FROM {s}.workflows"
        self.create = (
            f"INSERT INTO {s}.workflows ({columns}) "
            f"VALUES ({', '.join(['%s'] * len(WORKFLOW_COLUMNS))}) "
            "ON CONFLICT (workflow_id) DO NOTHING"
        )
        event_columns = ("workflow_id, position, run, call, kind, name, digest, args, "
                         "encoding, payload, created")
        self.insert_event = (
            f"INSERT INTO {s}.events ({event_columns}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        # One fenced statement: the row lock (FOR SHARE) makes a concurrent claim by
        # another owner wait, or this insert see that owner and insert nothing.
        self.fast_insert = (
            f"INSERT INTO {s}.events ({event_columns}) "
            "SELECT %s, %s, run, %s, %s, %s, %s, %s, %s, %s, %s "
            f"FROM {s}.workflows WHERE workflow_id = %s AND owner = %s AND control IS NULL "
            "FOR SHARE ON CONFLICT DO NOTHING"
        )
        self.lock_owner = (
            f"SELECT owner, control, run FROM {s}.workflows WHERE workflow_id = %s FOR UPDATE"
        )
        self.consume = (
            f"UPDATE {s}.signals SET consumed_position = %s "
            "WHERE id = %s AND consumed_position IS NULL"
        )
        self.publish = (
            f"INSERT INTO {s}.published VALUES (%s, %s, %s, %s, %s) ON CONFLICT "
            "(workflow_id, key) DO UPDATE SET encoding = excluded.encoding, "
            "payload = excluded.payload, updated = excluded.updated"
        )
        # After arming a wait, look once more, in the same transaction: no missed wake-up.
        self.recheck = {
            "signal": f"UPDATE {s}.workflows w SET wake_at = %s WHERE w.workflow_id = %s AND "
            f"EXISTS (SELECT 1 FROM {s}.signals g WHERE g.workflow_id = w.workflow_id "
            "AND g.name = %s AND g.consumed_position IS NULL)",
            "child": f"UPDATE {s}.workflows w SET wake_at = %s WHERE w.workflow_id = %s AND "
            f"EXISTS (SELECT 1 FROM {s}.workflows c WHERE c.workflow_id = %s "
            "AND c.status IN ('SUCCESS', 'FAILURE', 'CANCELLED'))",
        }
        # Taken before a write that must not cross the workflow's own check of the same
        # thing (a signal sent while it arms its wait, a child ending meanwhile): the
        # owner's append holds the row (FOR UPDATE) from its check to its commit, so one
        # of the two transactions sees the other's write. (SQLite serializes all writes.)
        self.lock_row = (
            f"SELECT 1 FROM {s}.workflows WHERE workflow_id = %s FOR NO KEY UPDATE"
        )
        self.wake = (
            f"UPDATE {s}.workflows SET wake_at = %s WHERE workflow_id = %s AND owner IS NULL "
            "AND status = 'WAITING'"
        )


class Append(AppendRequest):
    """One append request waiting for the PostgreSQL store's group commit."""

    __slots__ = ()

    def time(self) -> float:
        """The time of this append: the engine's clock, or now."""
        return time.time() if self.now is None else self.now

    @property
    def notifies(self) -> bool:
        """Whether others must hear of it: a run ends or waits, a value is published, a
        parent is woken."""
        return not self.simple

    def apply(self, cur: psycopg.Cursor[Any], sql: Sql) -> None:
        self.control = apply_append(cur, sql, self)


class Create(CreateRequest):
    """A new workflow (row and first events) waiting for a group commit."""

    __slots__ = ()

    @property
    def notifies(self) -> bool:
        return self.row.owner is None  # runnable by any engine (not claimed at creation)

    def apply(self, cur: psycopg.Cursor[Any], sql: Sql) -> None:
        row = self.row
        cur.execute(sql.create, row_values(row))
        if cur.rowcount == 0:
            cur.execute(f"{sql.select_workflow} WHERE workflow_id = %s", (self.workflow_id,))
            found = cur.fetchone()
            if found is not None:
                self.existing = workflow_row(found)
                return
        insert_events(cur, sql, self.workflow_id, row.run, self.events, row.created)
        for key, encoding, payload in self.publish or ():
            cur.execute(sql.publish, (self.workflow_id, key, encoding, tag(payload), row.created))


Request = Append | Create


def fast_insert(cur: psycopg.Cursor[Any], sql: Sql, request: Append) -> bool:
    """The common append in one statement; False when the full path must decide (not the
    owner, a control request pending, or the position taken)."""
    e = request.events[0]
    cur.execute(sql.fast_insert, (
        request.workflow_id, e.position, e.call, e.kind, e.name, e.digest, e.args,
        e.encoding, tag(e.payload), request.time(), request.workflow_id, request.owner,
    ))
    return cur.rowcount == 1


def apply_append(cur: psycopg.Cursor[Any], sql: Sql, request: Append) -> str | None:
    """The full fenced append (see Store.append), inside the caller's savepoint."""
    now = request.time()
    workflow_id, owner, events, update = (
        request.workflow_id, request.owner, request.events, request.update)
    cur.execute(sql.lock_owner, (workflow_id,))
    found = cur.fetchone()
    if found is None or found[0] != owner:
        raise Fenced(workflow_id)
    control, run = found[1], found[2]
    if control == "cancel" and update is not None and update.get("status") == "SUCCESS":
        return "cancel"  # a cancel that came after the last call wins: nothing is written
    try:
        insert_events(cur, sql, workflow_id, run, events, now)
    except psycopg.errors.UniqueViolation as error:  # a position taken: another executor
        raise Fenced(workflow_id) from error
    if request.consume_signal is not None:
        cur.execute(sql.consume, (events[0].position, request.consume_signal))
    if request.publish is not None:
        key, encoding, payload = request.publish
        cur.execute(sql.publish, (workflow_id, key, encoding, tag(payload), now))
    update = update_under_control(update, owner, control)
    if update:
        if not set(update) <= set(WORKFLOW_COLUMNS):
            unknown = sorted(set(update) - set(WORKFLOW_COLUMNS))
            raise ValueError(f"append: unknown workflow columns {unknown}")
        sets = ", ".join(f"{column} = %s" for column in update)
        values = [tag(v) if c in _PAYLOAD_COLUMNS else v for c, v in update.items()]
        cur.execute(f"UPDATE {sql.schema}.workflows SET {sets}, updated = %s "
                    "WHERE workflow_id = %s", (*values, now, workflow_id))
        if request.recheck is not None and control != "pause":
            kind, name = request.recheck
            cur.execute(sql.recheck[kind], (now, workflow_id, name))
    if request.wake is not None:
        cur.execute(sql.lock_row, (request.wake,))
        cur.execute(sql.wake, (now, request.wake))
    return str(control) if control else None


def insert_events(cur: psycopg.Cursor[Any], sql: Sql, workflow_id: str, run: int,
                  events: list[NewEvent], now: float) -> None:
    if not events:
        return
    cur.executemany(sql.insert_event, [
        (workflow_id, e.position, e.run or run, e.call, e.kind, e.name, e.digest, e.args,
         e.encoding, tag(e.payload), now)
        for e in events
    ])


class GroupCommit:
    """Group commit: a thread whose request is queued becomes a leader when fewer than
    ``leaders`` commit now; a leader commits every request queued by then in one
    transaction (``commit``). The others sleep until theirs is done, or until they may
    lead the requests queued meanwhile. Nobody's write is acknowledged before the COMMIT
    that makes it durable has returned.

    More than one leader: while one transaction waits for its WAL flush, the next is
    written, and PostgreSQL flushes both with one fsync.
    """

    def __init__(self, commit: Callable[[list[Request]], None],
                 not_written: Callable[[Request], BaseException], leaders: int = 1) -> None:
        self._commit, self._not_written = commit, not_written
        self._pending: list[Request] = []
        self._changed = threading.Condition(threading.Lock())
        self._leaders, self._max_leaders = 0, leaders

    def submit(self, request: Request) -> None:
        with self._changed:
            self._pending.append(request)
            try:
                while not request.done:
                    if self._pending and self._leaders < self._max_leaders:
                        self._lead()
                    else:
                        self._changed.wait()
            except BaseException:  # interrupted (Ctrl-C in the main thread)
                if request in self._pending:
                    self._pending.remove(request)  # never written
                raise
        if request.error is not None:
            raise request.error

    def _lead(self) -> None:
        """Commit what is queued; called and returns with the lock held."""
        batch, self._pending = self._pending, []
        self._leaders += 1
        self._changed.release()
        try:
            self._commit(batch)
        finally:
            for request in batch:
                if not request.done:  # closed, or the leader was interrupted first
                    request.error = request.error or self._not_written(request)
                    request.done = True
            self._changed.acquire()
            self._leaders -= 1
            self._changed.notify_all()
