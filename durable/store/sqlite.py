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
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from durable.errors import DatabaseError, StorageError
from durable.replay import Recorded, recorded_from_row
from durable.store import Fenced, NewEvent, StorageFailed, WorkflowRow
from durable.store.cache import RunCache
from durable.store.sqlite_commit import (
    SELECT_WORKFLOW,
    Append,
    Create,
    fast_insert,
    not_written,
)
from durable.store.sqlite_connect import connect, open_reader, preallocate_wal
from durable.store.sqlite_controls import SQLiteControls
from durable.store.sqlite_errors import mapped, storage
from durable.store.sqlite_ops import SQLiteOps
from durable.store.sqlite_reads import SQLiteReads

log = logging.getLogger("durable")

_allocate_lock = _thread.allocate_lock
_RUNNABLE = (
    "SELECT workflow_id FROM workflows WHERE wake_at <= ? AND (owner IS NULL OR lease_until < ?)"
)
_EVENT_COLUMNS = "position, call, kind, name, digest, args, encoding, payload, created"


class SQLiteStore(SQLiteReads, SQLiteOps, SQLiteControls):
    """The event log in one SQLite file (see :class:`durable.store.Store`)."""

    #: Polling is how an engine learns of work that another process made runnable.
    poll_interval = 0.05

    def __init__(self, path: str, synchronous: str = "full", preallocate: bool = True,
                 read_only: bool = False) -> None:
        """``preallocate``: grow the WAL at once (see preallocate_wal); worth it for a
        long-lived executor at "full", not for a client opened for a few calls.
        ``read_only``: open the file read-only (``mode=ro``): no migration, no switch to
        WAL, and every write raises StorageError. For inspection."""
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()
        self._conn = connect(path, synchronous, read_only)
        # Reads on their own connection: WAL lets them run while a commit waits for its
        # fsync, which holds the writing connection (and _lock) for most of a commit.
        try:
            self._reader = open_reader(path, read_only)
        except sqlite3.Error as error:
            self._conn.close()
            raise DatabaseError(path, str(error)) from error
        self._read_lock = threading.RLock()  # events() reads under it, through _read
        if preallocate and synchronous == "full" and not read_only:
            preallocate_wal(self._conn, path)
        self._synchronous = synchronous
        self._closed = False
        self._pending: list[Append | Create] = []
        self._pending_lock = threading.Lock()
        self._leading = False  # a thread is committing the queued requests (see _submit)
        self._runs = RunCache()

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def _writing(self, what: str, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``sync=False`` skips the fsync of this commit: for writes
        that may be lost with a power cut (claims: fencing makes a lost claim harmless).
        The WAL is sequential, so a later synced commit makes this one durable too.
        Every sqlite3 error comes out as its durable error (StorageError mostly)."""
        with self._lock, storage(self.path, what):
            relaxed = not sync and self._synchronous == "full"
            if relaxed:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")  # take the write lock first: no BUSY
                try:
                    yield self._conn
                except BaseException:
                    if self._conn.in_transaction:  # a full disk may have ended it already
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if relaxed:
                    self._conn.execute("PRAGMA synchronous = FULL")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement, in its own read transaction: it sees every committed write."""
        with self._read_lock, storage(self.path, "a read"):
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

    def create_workflow(self, row: WorkflowRow, events: list[NewEvent],
                        publish: list[tuple[str, str, Any]] | None = None
                        ) -> WorkflowRow | None:
        request = Create(row, events, publish)
        self._submit(request)  # group-committed with appends: many starts share an fsync
        return request.existing

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[WorkflowRow]:
        claimed: list[WorkflowRow] = []
        # A read first: an idle poll must not take the write lock from other processes.
        if not self._read(_RUNNABLE + " LIMIT 1", (now, now)):
            return claimed
        with self._writing("claiming workflows", sync=False) as conn:
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
                conn.execute(  # dequeued: a deferred start (delay=) has left ENQUEUED
                    "UPDATE workflows SET owner = ?, lease_until = ?, status = 'RUNNING', "
                    "error = NULL, recoveries = ?, progress = ?, updated = ?, "
                    "dequeued = COALESCE(dequeued, ?) WHERE workflow_id = ?",
                    (owner, lease_until, row.recoveries, row.progress, now, now,
                     row.workflow_id),
                )
                row.owner, row.lease_until = owner, lease_until
                claimed.append(row)
        return claimed

    def owners(self) -> list[str]:
        """Every owner that holds a workflow now."""
        return [r[0] for r in self._read("SELECT DISTINCT owner FROM workflows WHERE owner <> ''")]

    def expire(self, owner: str) -> None:
        """End the leases of ``owner`` at once (its process is known to be gone)."""
        with self._writing("expiring the leases of a dead owner") as conn:
            conn.execute("UPDATE workflows SET lease_until = 0 WHERE owner = ?", (owner,))

    def retry_set_aside(self, now: float | None = None) -> None:
        """Make every workflow set aside with an error (diverged, unknown) runnable now."""
        with self._writing("retrying workflows set aside") as conn:
            conn.execute(
                "UPDATE workflows SET wake_at = ? WHERE owner IS NULL AND (error IS NOT NULL "
                "OR control = 'cancel') AND "
                "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')",
                (time.time() if now is None else now,),
            )

    def renew(self, owner: str, lease_until: float, workflow_ids: Collection[str]) -> None:
        if not workflow_ids:
            return
        ids = list(workflow_ids)
        with self._writing("renewing leases", sync=False) as conn:
            for start in range(0, len(ids), 500):  # under SQLite's limit of bound variables
                chunk = ids[start:start + 500]
                conn.execute(  # not the leases ended by crashed()
                    "UPDATE workflows SET lease_until = ? WHERE owner = ? AND lease_until > 0 "
                    f"AND workflow_id IN ({', '.join('?' * len(chunk))})",
                    (lease_until, owner, *chunk),
                )

    def retry_later(self, owner: str, workflow_id: str, retry_at: float, why: str) -> None:
        with self._writing(f"releasing workflow {workflow_id!r} for a retry") as conn:
            conn.execute(
                "UPDATE workflows SET owner = NULL, lease_until = NULL, wake_at = ?, "
                "waiting = ?, updated = ? WHERE owner = ? AND workflow_id = ?",
                (retry_at, why, time.time(), owner, workflow_id),
            )

    def crashed(self, owner: str, workflow_id: str, retry_at: float) -> None:
        with self._writing(f"marking workflow {workflow_id!r} for a retry") as conn:
            conn.execute(
                "UPDATE workflows SET lease_until = 0, wake_at = ? "
                "WHERE owner = ? AND workflow_id = ?",
                (retry_at, owner, workflow_id),
            )

    def release(self, owner: str, workflow_id: str | None = None,
                now: float | None = None) -> None:
        with self._writing("releasing workflows") as conn:
            if workflow_id is None:
                conn.execute(
                    "UPDATE workflows SET owner = NULL, wake_at = COALESCE(wake_at, ?) "
                    "WHERE owner = ?",
                    (time.time() if now is None else now, owner),
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
        now: float | None = None,
    ) -> str | None:
        request = Append(workflow_id, owner, events, update, consume_signal, publish, recheck,
                          wake, now)
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
            if len(batch) == 1 and isinstance(first, Append) and first.simple:
                try:
                    if fast_insert(conn, first):
                        return
                except Fenced as error:
                    first.error = error
                    return
            conn.execute("BEGIN IMMEDIATE")
            try:
                for request in batch:
                    self._apply(conn, request)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except (sqlite3.Error, UnicodeEncodeError) as error:
            # The transaction failed as a whole (disk full, I/O error): nothing of this
            # batch is durable. A run unwinds with StorageFailed (the engine releases the
            # workflow for a retry); a start raises StorageError.
            for request in batch:
                request.error = request.error or self._failed(request, error)
        except BaseException as error:
            for request in batch:
                request.error = request.error or error
        finally:
            for request in batch:
                request.done = True

    def _apply(self, conn: sqlite3.Connection, request: Append | Create) -> None:
        """Apply one request of a group commit under its own savepoint: a request that
        fails (a bad id, a lost workflow) fails alone; the others still commit. An error
        that ended the whole transaction (a full disk may) is raised for all."""
        if isinstance(request, Append) and request.simple:
            try:  # one statement: SQLite undoes a failed statement by itself
                if fast_insert(conn, request):
                    return
            except Fenced as error:
                request.error = error
                return
            except (sqlite3.Error, UnicodeEncodeError) as error:
                if not conn.in_transaction:
                    raise
                request.error = self._failed(request, error)
                return
        conn.execute("SAVEPOINT one_write")
        try:
            request.apply(conn)
        except BaseException as error:
            if not conn.in_transaction:
                raise
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            request.error = (self._failed(request, error)
                             if isinstance(error, sqlite3.Error | UnicodeEncodeError) else error)
            return
        conn.execute("RELEASE one_write")

    def _failed(self, request: Append | Create, error: BaseException) -> BaseException:
        """The error a request of a failed write gets: InvalidArgument for a value that
        cannot be stored; StorageError for a start, StorageFailed (an unwinding) in a run."""
        if isinstance(request, Create):
            return mapped(self.path, f"starting workflow {request.workflow_id!r}", error)
        durable_error = mapped(
            self.path, f"recording events of workflow {request.workflow_id!r}", error)
        if isinstance(durable_error, StorageError):
            return StorageFailed(request.workflow_id, durable_error)
        return durable_error

    # -- signals and published events -------------------------------------------

    def next_signal(self, workflow_id: str, name: str) -> tuple[int, str, Any] | None:
        rows = self._read(
            "SELECT id, encoding, payload FROM signals WHERE workflow_id = ? AND name = ? "
            "AND consumed_position IS NULL ORDER BY id LIMIT 1",
            (workflow_id, name),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def send_signal(self, workflow_id: str, name: str, encoding: str, payload: Any,
                    now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._writing(f"sending signal {name!r} to workflow {workflow_id!r}") as conn:
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


