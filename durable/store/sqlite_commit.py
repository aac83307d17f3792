"""The writes of the SQLite store's group commit: each request applied in the leader's
transaction (see :meth:`durable.store.sqlite.SQLiteStore.append`)."""

from __future__ import annotations

import _thread
import sqlite3
import time
from typing import Any

from durable.errors import DatabaseError, EngineClosed
from durable.store import WORKFLOW_COLUMNS, Fenced, NewEvent, WorkflowRow
from durable.store.rows import AppendRequest, CreateRequest, update_under_control

SELECT_WORKFLOW = f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM workflows"
# After arming a wait, look once more, in the same transaction: no missed wake-up.
_RECHECK = {
    "signal": "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND EXISTS (SELECT 1 "
    "FROM signals s WHERE s.workflow_id = workflows.workflow_id AND s.name = ? "
    "AND s.consumed_position IS NULL)",
    "child": "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND EXISTS (SELECT 1 "
    "FROM workflows c WHERE c.workflow_id = ? AND c.status IN "
    "('SUCCESS', 'FAILURE', 'CANCELLED'))",
}
_INSERT_EVENT = (
    "INSERT INTO events (workflow_id, position, run, call, kind, name, digest, args, "
    "encoding, payload, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)



def not_written(request: Append | Create, path: str, closed: bool) -> BaseException:
    """The error of a request that no commit carried."""
    if isinstance(request, Create):
        return EngineClosed(path) if closed else DatabaseError(path, "the commit was interrupted")
    return Fenced(request.workflow_id,
                  "the engine was closed" if closed else "the commit was interrupted")


class Append(AppendRequest):
    """One append request waiting for the SQLite store's group commit."""

    __slots__ = ("waiter",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiter: _thread.LockType | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        self.control = apply_append(conn, self)


class Create(CreateRequest):
    """A new workflow (row and first events) waiting for a group commit."""

    __slots__ = ("waiter",)

    def __init__(self, row: WorkflowRow, events: list[NewEvent],
                 publish: list[tuple[str, str, Any]] | None = None) -> None:
        super().__init__(row, events, publish)
        self.waiter: _thread.LockType | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        """Applied under a savepoint (see SQLiteStore._apply): an event that cannot be
        stored takes the new row back with it."""
        row = self.row
        if conn.execute(_CREATE_WORKFLOW, tuple(getattr(row, c) for c in WORKFLOW_COLUMNS)
                        ).rowcount == 0:
            found = conn.execute(
                f"{SELECT_WORKFLOW} WHERE workflow_id = ?", (self.workflow_id,)
            ).fetchone()
            self.existing = WorkflowRow(*found)
            return
        insert_events(conn, self.workflow_id, row.run, self.events, row.created)
        if self.publish:
            conn.executemany("INSERT OR REPLACE INTO published VALUES (?, ?, ?, ?, ?)",
                             [(self.workflow_id, *p, row.created) for p in self.publish])


_CREATE_WORKFLOW = (
    f"INSERT INTO workflows ({', '.join(WORKFLOW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(WORKFLOW_COLUMNS))}) ON CONFLICT (workflow_id) DO NOTHING"
)


_FAST_INSERT = (
    "INSERT INTO events (workflow_id, position, run, call, kind, name, digest, args, encoding, "
    "payload, created) SELECT ?, ?, run, ?, ?, ?, ?, ?, ?, ?, ? FROM workflows "
    "WHERE workflow_id = ? AND owner = ? AND control IS NULL"
)


def fast_insert(conn: sqlite3.Connection, request: Append) -> bool:
    """The common append in one statement; False when the full path must decide."""
    e = request.events[0]
    try:
        cursor = conn.execute(_FAST_INSERT, (
            request.workflow_id, e.position, e.call, e.kind, e.name, e.digest, e.args,
            e.encoding, e.payload, time.time() if request.now is None else request.now,
            request.workflow_id, request.owner,
        ))
    except sqlite3.IntegrityError as error:
        if position_taken(error):  # another executor wrote: we lost the workflow
            raise Fenced(request.workflow_id) from error
        raise
    return cursor.rowcount == 1


def position_taken(error: sqlite3.IntegrityError) -> bool:
    """True when an event insert failed because its position is already in the log (the
    only constraint violation that means another executor wrote this workflow)."""
    return getattr(error, "sqlite_errorcode", None) == _PRIMARY_KEY_CONFLICT or (
        "UNIQUE constraint failed: events.workflow_id, events.position" in str(error))


_PRIMARY_KEY_CONFLICT = 1555  # SQLITE_CONSTRAINT_PRIMARYKEY


def apply_append(conn: sqlite3.Connection, request: Append) -> str | None:
    """The full fenced append (see Store.append), inside the caller's transaction."""
    now = time.time() if request.now is None else request.now
    workflow_id, owner, events, update = (
        request.workflow_id, request.owner, request.events, request.update)
    found = conn.execute(
        "SELECT owner, control, run FROM workflows WHERE workflow_id = ?", (workflow_id,)
    ).fetchone()
    if found is None or found[0] != owner:
        raise Fenced(workflow_id)
    control, run = found[1], found[2]
    if control == "cancel" and update is not None and update.get("status") == "SUCCESS":
        return "cancel"  # a cancel that came after the last call wins: nothing is written
    try:
        insert_events(conn, workflow_id, run, events, now)
    except sqlite3.IntegrityError as error:
        if position_taken(error):  # another executor wrote: we lost the workflow
            raise Fenced(workflow_id) from error
        raise
    if request.consume_signal is not None:
        conn.execute(
            "UPDATE signals SET consumed_position = ? WHERE id = ? AND consumed_position IS NULL",
            (events[0].position, request.consume_signal),
        )
    if request.publish is not None:
        conn.execute("INSERT OR REPLACE INTO published VALUES (?, ?, ?, ?, ?)",
                     (workflow_id, *request.publish, now))
    update = update_under_control(update, owner, control)
    if update:
        sets = ", ".join(f"{column} = ?" for column in update)
        conn.execute(
            f"UPDATE workflows SET {sets}, updated = ? WHERE workflow_id = ?",
            (*update.values(), now, workflow_id),
        )
        if request.recheck is not None and control != "pause":
            conn.execute(_RECHECK[request.recheck[0]], (now, workflow_id, request.recheck[1]))
    if request.wake is not None:
        conn.execute(
            "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND owner IS NULL "
            "AND status = 'WAITING'",
            (now, request.wake),
        )
    return str(control) if control else None


def insert_events(
    conn: sqlite3.Connection, workflow_id: str, run: int, events: list[NewEvent], now: float
) -> None:
    conn.executemany(
        _INSERT_EVENT,
        [
            (workflow_id, e.position, e.run or run, e.call, e.kind, e.name, e.digest, e.args,
             e.encoding, e.payload, now)
            for e in events
        ],
    )


