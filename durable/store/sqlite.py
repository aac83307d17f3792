"""The SQLite store: WAL, one ``BEGIN IMMEDIATE`` transaction per write.

One connection per store, shared by the engine's threads under a lock: SQLite
admits one writer at a time anyway, and a single connection never meets
SQLITE_BUSY from its own process. Other processes are waited for by the busy
timeout, and every write takes the write lock first (``BEGIN IMMEDIATE``), so a
transaction never fails half-way for a lock it could have waited for.
"""

from __future__ import annotations

import _thread
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from durable.errors import DatabaseError
from durable.replay import Recorded, recorded_from_row
from durable.store import Fenced, NewEvent, WorkflowRow
from durable.store.cache import RunCache
from durable.store.sqlite_commit import (
    SELECT_WORKFLOW,
    Append,
    Create,
    fast_insert,
    not_written,
)
from durable.store.sqlite_connect import BUSY_TIMEOUT_S, connect, preallocate_wal

log = logging.getLogger("durable")

_allocate_lock = _thread.allocate_lock
_RUNNABLE = (
    "SELECT workflow_id FROM workflows WHERE wake_at <= ? AND (owner IS NULL OR lease_until < ?)"
)
_UNFINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
_AT_REST = f"owner IS NULL AND control IS NULL AND status <> 'PAUSED' AND {_UNFINISHED}"
_EVENT_COLUMNS = "position, call, kind, name, digest, args, encoding, payload, created"
class SQLiteStore:
    """The event log in one SQLite file (see :class:`durable.store.Store`)."""

    #: Polling is how an engine learns of work that another process made runnable.
    poll_interval = 0.05

    def __init__(self, path: str, synchronous: str = "full", preallocate: bool = True) -> None:
        """``preallocate``: grow the WAL at once (see preallocate_wal); worth it for a
        long-lived executor at "full", not for a client opened for a few calls."""
        self.path = path
        self._lock = threading.RLock()
        self._conn = connect(path, synchronous)
        # Reads on their own connection: WAL lets them run while a commit waits for its
        # fsync, which holds the writing connection (and _lock) for most of a commit.
        try:
            self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                           timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as error:
            self._conn.close()
            raise DatabaseError(path, str(error)) from error
        self._read_lock = threading.RLock()  # events() reads under it, through _read
        if preallocate and synchronous == "full":
            preallocate_wal(self._conn, path)
        self._synchronous = synchronous
        self._closed = False
        self._pending: list[Append | Create] = []
        self._pending_lock = threading.Lock()
        self._leading = False  # a thread is committing the queued requests (see _submit)
        self._runs = RunCache()

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def _writing(self, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``sync=False`` skips the fsync of this commit: for writes
        that may be lost with a power cut (claims: fencing makes a lost claim harmless).
        The WAL is sequential, so a later synced commit makes this one durable too."""
        with self._lock:
            relaxed = not sync and self._synchronous == "full"
            if relaxed:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")  # take the write lock first: no BUSY
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if relaxed:
                    self._conn.execute("PRAGMA synchronous = FULL")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement, in its own read transaction: it sees every committed write."""
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._closed = True
            self._reader.close()
            self._conn.close()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """SQLite cannot tell another process's writes: the engine polls."""

    def next_wake(self, now: float) -> float | None:
        return None  # the short poll finds due timers

    # -- workflows --------------------------------------------------------------

    def create_workflow(self, row: WorkflowRow, events: list[NewEvent]) -> WorkflowRow | None:
        request = Create(row, events)
        self._submit(request)  # group-committed with appends: many starts share an fsync
        return request.existing

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[WorkflowRow]:
        claimed: list[WorkflowRow] = []
        # A read first: an idle poll must not take the write lock from other processes.
        if not self._read(_RUNNABLE + " LIMIT 1", (now, now)):
            return claimed
        with self._writing(sync=False) as conn:
            rows = conn.execute(
                f"{SELECT_WORKFLOW} WHERE workflow_id IN ({_RUNNABLE} ORDER BY wake_at LIMIT ?)",
                (now, now, limit),
            ).fetchall()
            for values in rows:
                row = WorkflowRow(*values)
                if row.control == "pause":
                    conn.execute(
                        "UPDATE workflows SET status = 'PAUSED', owner = NULL, wake_at = NULL, "
                        "control = NULL, waiting = 'resume', updated = ? WHERE workflow_id = ?",
                        (now, row.workflow_id),
                    )
                    continue
                if row.owner is not None:
                    # Its last executor died while running it: count recoveries without
                    # progress, so a workflow that kills its process cannot loop forever.
                    (last,) = conn.execute(
                        "SELECT COALESCE(MAX(position), 0) FROM events WHERE workflow_id = ?",
                        (row.workflow_id,),
                    ).fetchone()
                    row.recoveries = 1 if last > row.progress else row.recoveries + 1
                    row.progress = last
                conn.execute(
                    "UPDATE workflows SET owner = ?, lease_until = ?, status = 'RUNNING', "
                    "error = NULL, recoveries = ?, progress = ?, updated = ? "
                    "WHERE workflow_id = ?",
                    (owner, lease_until, row.recoveries, row.progress, now, row.workflow_id),
                )
                row.owner, row.lease_until = owner, lease_until
                claimed.append(row)
        return claimed

    def owners(self) -> list[str]:
        """Every owner that holds a workflow now."""
        return [r[0] for r in self._read("SELECT DISTINCT owner FROM workflows WHERE owner <> ''")]

    def expire(self, owner: str) -> None:
        """End the leases of ``owner`` at once (its process is known to be gone)."""
        with self._writing() as conn:
            conn.execute("UPDATE workflows SET lease_until = 0 WHERE owner = ?", (owner,))

    def retry_set_aside(self) -> None:
        """Make every workflow set aside with an error (diverged, unknown) runnable now."""
        with self._writing() as conn:
            conn.execute(
                "UPDATE workflows SET wake_at = ? WHERE owner IS NULL AND error IS NOT NULL "
                "AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')",
                (time.time(),),
            )

    def renew(self, owner: str, lease_until: float) -> None:
        with self._writing(sync=False) as conn:
            conn.execute(  # not the leases ended by crashed()
                "UPDATE workflows SET lease_until = ? WHERE owner = ? AND lease_until > 0",
                (lease_until, owner),
            )

    def crashed(self, owner: str, workflow_id: str, retry_at: float) -> None:
        with self._writing() as conn:
            conn.execute(
                "UPDATE workflows SET lease_until = 0, wake_at = ? "
                "WHERE owner = ? AND workflow_id = ?",
                (retry_at, owner, workflow_id),
            )

    def release(self, owner: str, workflow_id: str | None = None) -> None:
        with self._writing() as conn:
            if workflow_id is None:
                conn.execute(
                    "UPDATE workflows SET owner = NULL, wake_at = COALESCE(wake_at, ?) "
                    "WHERE owner = ?",
                    (time.time(), owner),
                )
            else:
                conn.execute(
                    "UPDATE workflows SET owner = NULL WHERE owner = ? AND workflow_id = ?",
                    (owner, workflow_id),
                )

    def workflow(self, workflow_id: str) -> WorkflowRow | None:
        rows = self._read(f"{SELECT_WORKFLOW} WHERE workflow_id = ?", (workflow_id,))
        return WorkflowRow(*rows[0]) if rows else None

    def workflows(
        self, status: str | None, name: str | None, limit: int, parent_id: str | None = None
    ) -> list[WorkflowRow]:
        clauses, params = [], []
        for column, value in (("status", status), ("name", name), ("parent_id", parent_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            f"{SELECT_WORKFLOW} {where} ORDER BY created DESC, workflow_id LIMIT ?",
            (*params, limit),
        )
        return [WorkflowRow(*r) for r in rows]

    # -- controls from outside ----------------------------------------------------

    def request_pause(self, workflow_id: str, now: float) -> None:
        with self._writing() as conn:
            # At rest (nobody runs it): paused at once. Running: it pauses itself at its
            # next recorded call. A pending cancel (or a compensation) wins over a pause.
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
        with self._writing() as conn:
            # A pause still pending is withdrawn; a pending cancel is left alone.
            conn.execute(
                "UPDATE workflows SET control = NULL, updated = ? WHERE workflow_id = ? "
                "AND control = 'pause'",
                (now, workflow_id),
            )
            conn.execute(
                "UPDATE workflows SET status = 'RUNNING', wake_at = ?, waiting = NULL, "
                "updated = ? WHERE workflow_id = ? AND status = 'PAUSED'",
                (now, now, workflow_id),
            )

    def request_cancel(self, workflow_id: str, now: float) -> None:
        with self._writing() as conn:
            # A waiting or paused workflow is woken at once; a running one unwinds at its
            # next call. One that is already compensating goes on doing so.
            conn.execute(
                "UPDATE workflows SET control = 'cancel', wake_at = ?, updated = ? "
                f"WHERE workflow_id = ? AND {_UNFINISHED} "
                "AND (control IS NULL OR control = 'pause')",
                (now, now, workflow_id),
            )

    # -- the log ----------------------------------------------------------------

    def events(self, workflow_id: str, run: int | None = None) -> list[Recorded]:
        if run is None:
            sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE workflow_id = ? ORDER BY position"
            return list(map(recorded_from_row, self._read(sql, (workflow_id,))))
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE workflow_id = ? AND run = ? "
            "AND position > ? ORDER BY position"
        )
        with self._read_lock:  # a run is read from where the cache of its start ends
            known = self._runs.known(workflow_id, run)
            after = known[-1].position if known else -1
            rows = self._read(sql, (workflow_id, run, after))
            return self._runs.read(workflow_id, run, known, list(map(recorded_from_row, rows)))

    def last_position(self, workflow_id: str) -> int:
        rows = self._read(
            "SELECT COALESCE(MAX(position), -1) FROM events WHERE workflow_id = ?", (workflow_id,)
        )
        return int(rows[0][0])

    def append(
        self,
        workflow_id: str,
        owner: str,
        events: list[NewEvent],
        update: dict[str, Any] | None = None,
        consume_signal: int | None = None,
        publish: tuple[str, str, Any] | None = None,
        recheck: tuple[str, str] | None = None,
        wake: str | None = None,
    ) -> str | None:
        request = Append(workflow_id, owner, events, update, consume_signal, publish, recheck,
                          wake)
        self._submit(request)
        return request.control

    def _submit(self, request: Append | Create) -> None:
        """Group commit: one thread at a time, the leader, commits every request queued
        by then in one transaction, then hands the lead to the oldest request queued
        meanwhile. The others sleep until theirs is done. Nobody's write is acknowledged
        before the COMMIT that makes it durable has returned."""
        with self._pending_lock:
            self._pending.append(request)
            if self._leading:
                request.waiter = _allocate_lock()
                request.waiter.acquire()
            else:
                self._leading = True
        if request.waiter is not None:
            try:
                request.waiter.acquire()  # released when done, or when handed the lead
            except BaseException:  # interrupted (Ctrl-C in the main thread)
                with self._pending_lock:
                    if request.waiter is not None and request in self._pending:
                        self._pending.remove(request)  # never written
                        raise
                if not request.done:
                    self._lead()  # it was handed the lead: pass it on before leaving
                raise
        if not request.done:
            self._lead()
        if request.error is not None:
            raise request.error

    def _lead(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        try:
            with self._lock:
                if not self._closed:
                    self._commit(batch)
        finally:
            for request in batch:
                if not request.done:  # closed, or the leader was interrupted first
                    request.error = not_written(request, self.path, self._closed)
                    request.done = True
            with self._pending_lock:
                successor = self._pending[0] if self._pending else None
                if successor is None:
                    self._leading = False
                else:
                    waiter, successor.waiter = successor.waiter, None
            if successor is not None:
                assert waiter is not None
                waiter.release()
            for request in batch:
                if request.waiter is not None:
                    request.waiter.release()

    def _commit(self, batch: list[Append | Create]) -> None:
        conn = self._conn
        try:
            # One event, nothing else: a single fenced INSERT ... SELECT, its own
            # transaction. It inserts nothing if we lost the workflow or a pause or
            # cancel waits; then the full path below finds out which.
            first = batch[0]
            if len(batch) == 1 and isinstance(first, Append) and first.simple and fast_insert(
                conn, first
            ):
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                for request in batch:
                    if isinstance(request, Create):
                        request.apply(conn)
                        continue
                    if request.simple:
                        try:
                            if fast_insert(conn, request):
                                continue
                        except Fenced as error:  # only this statement was undone
                            request.error = error
                            continue
                    conn.execute("SAVEPOINT one_write")
                    try:
                        request.apply(conn)
                    except BaseException as error:
                        conn.execute("ROLLBACK TO one_write")
                        request.error = error
                    conn.execute("RELEASE one_write")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            # The database failed (disk full, I/O error): nothing of this batch is durable.
            # Fenced stops each executor without recording anything; the workflows are
            # recovered later, and the failure is never recorded as the workflow's own.
            for request in batch:
                request.error = request.error or (
                    DatabaseError(self.path, str(error)) if isinstance(request, Create)
                    else Fenced(request.workflow_id, f"storage: {error}"))
        except BaseException as error:
            for request in batch:
                request.error = request.error or error
        finally:
            for request in batch:
                request.done = True

    # -- signals and published events -------------------------------------------

    def next_signal(self, workflow_id: str, name: str) -> tuple[int, str, Any] | None:
        rows = self._read(
            "SELECT id, encoding, payload FROM signals WHERE workflow_id = ? AND name = ? "
            "AND consumed_position IS NULL ORDER BY id LIMIT 1",
            (workflow_id, name),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def send_signal(self, workflow_id: str, name: str, encoding: str, payload: Any) -> None:
        now = time.time()
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO signals (workflow_id, name, encoding, payload, sent) "
                "VALUES (?, ?, ?, ?, ?)",
                (workflow_id, name, encoding, payload, now),
            )
            # Armed in the same transaction as the waiter's check, so no wake-up is missed.
            conn.execute(
                "UPDATE workflows SET wake_at = ? WHERE workflow_id = ? AND wait_signal = ? "
                "AND owner IS NULL AND status = 'WAITING'",
                (now, workflow_id, name),
            )

    def published(self, workflow_id: str, key: str) -> tuple[str, Any] | None:
        rows = self._read(
            "SELECT encoding, payload FROM published WHERE workflow_id = ? AND key = ?",
            (workflow_id, key),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def signals(self, workflow_id: str) -> list[tuple[Any, ...]]:
        """Every signal sent to a workflow: ``(id, name, sent, consumed_position)``."""
        return self._read(
            "SELECT id, name, sent, consumed_position FROM signals WHERE workflow_id = ? "
            "ORDER BY id",
            (workflow_id,),
        )


