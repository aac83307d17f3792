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
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from durable.errors import DatabaseError, EngineClosed
from durable.replay import Recorded, recorded_from_row
from durable.store import TERMINAL_STATUSES, WORKFLOW_COLUMNS, Fenced, NewEvent, WorkflowRow
from durable.store.cache import RunCache
from durable.store.schema import MIGRATIONS
from durable.store.sqlite_reads import SQLiteReads

log = logging.getLogger("durable")

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
BUSY_TIMEOUT_S = 60.0
#: WAL frames after which a commit checkpoints (PASSIVE) on its way out, per mode. At
#: "full", a small WAL that is checkpointed often starts over from its beginning and its
#: commits overwrite blocks already on disk: their fdatasync skips the file-size update
#: that an appended WAL costs, about twice as fast here. At "normal" commits do not sync,
#: and each checkpoint syncs twice: rarer is cheaper.
AUTOCHECKPOINT_FRAMES = {"full": 256, "normal": 10_000}
#: Bytes the WAL is grown to when a "full" store that preallocates opens (see
#: _preallocate_wal).
WAL_PREALLOCATE = 1_536 * 1024

_allocate_lock = _thread.allocate_lock
_SELECT_WORKFLOW = f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM workflows"
_RUNNABLE = (
    "SELECT workflow_id FROM workflows WHERE wake_at <= ? AND (owner IS NULL OR lease_until < ?)"
)
_EVENT_COLUMNS = "position, call, kind, name, digest, args, encoding, payload, created"
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


class SQLiteStore(SQLiteReads):
    """The event log in one SQLite file (see :class:`durable.store.Store`)."""

    def __init__(self, path: str, synchronous: str = "full", preallocate: bool = True) -> None:
        """``preallocate``: grow the WAL at once (see _preallocate_wal); worth it for a
        long-lived executor at "full", not for a client opened for a few calls."""
        self.path = path
        self._lock = threading.RLock()
        self._conn = _connect(path, synchronous)
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
            _preallocate_wal(self._conn, path)
        self._synchronous = synchronous
        self._closed = False
        self._pending: list[_Append | _Create] = []
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

    # -- workflows --------------------------------------------------------------

    def create_workflow(self, row: WorkflowRow, events: list[NewEvent]) -> WorkflowRow | None:
        request = _Create(row, events)
        self._submit(request)  # group-committed with appends: many starts share an fsync
        return request.existing

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[WorkflowRow]:
        claimed: list[WorkflowRow] = []
        # A read first: an idle poll must not take the write lock from other processes.
        if not self._read(_RUNNABLE + " LIMIT 1", (now, now)):
            return claimed
        with self._writing(sync=False) as conn:
            rows = conn.execute(
                f"{_SELECT_WORKFLOW} WHERE workflow_id IN ({_RUNNABLE} ORDER BY wake_at LIMIT ?)",
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
        rows = self._read(f"{_SELECT_WORKFLOW} WHERE workflow_id = ?", (workflow_id,))
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
            f"{_SELECT_WORKFLOW} {where} ORDER BY created DESC, workflow_id LIMIT ?",
            (*params, limit),
        )
        return [WorkflowRow(*r) for r in rows]

    def update(self, workflow_id: str, changes: dict[str, Any], only_if: str) -> bool:
        sets = ", ".join(f"{column} = ?" for column in changes)
        with self._writing() as conn:
            cursor = conn.execute(
                f"UPDATE workflows SET {sets}, updated = ? WHERE workflow_id = ? AND ({only_if})",
                (*changes.values(), time.time(), workflow_id),
            )
            return cursor.rowcount > 0

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
        request = _Append(workflow_id, owner, events, update, consume_signal, publish, recheck,
                          wake)
        self._submit(request)
        return request.control

    def _submit(self, request: _Append | _Create) -> None:
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
                    request.error = _not_written(request, self.path, self._closed)
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

    def _commit(self, batch: list[_Append | _Create]) -> None:
        conn = self._conn
        try:
            # One event, nothing else: a single fenced INSERT ... SELECT, its own
            # transaction. It inserts nothing if we lost the workflow or a pause or
            # cancel waits; then the full path below finds out which.
            first = batch[0]
            if len(batch) == 1 and isinstance(first, _Append) and first.simple and _fast_insert(
                conn, first
            ):
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                for request in batch:
                    if isinstance(request, _Create):
                        request.apply(conn)
                        continue
                    if request.simple:
                        try:
                            if _fast_insert(conn, request):
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
                    DatabaseError(self.path, str(error)) if isinstance(request, _Create)
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


def _not_written(request: _Append | _Create, path: str, closed: bool) -> BaseException:
    """The error of a request that no commit carried."""
    if isinstance(request, _Create):
        return EngineClosed(path) if closed else DatabaseError(path, "the commit was interrupted")
    return Fenced(request.workflow_id,
                  "the engine was closed" if closed else "the commit was interrupted")


class _Append:
    """One append request waiting for a group commit."""

    __slots__ = ("consume_signal", "control", "done", "error", "events", "owner", "publish",
                 "recheck", "simple", "update", "waiter", "wake", "workflow_id")

    def __init__(self, workflow_id: str, owner: str, events: list[NewEvent],
                 update: dict[str, Any] | None, consume_signal: int | None,
                 publish: tuple[str, str, Any] | None, recheck: tuple[str, str] | None,
                 wake: str | None) -> None:
        self.workflow_id, self.owner, self.events, self.update = workflow_id, owner, events, update
        self.consume_signal, self.publish, self.recheck, self.wake = (
            consume_signal, publish, recheck, wake)
        self.simple = len(events) == 1 and not (update or consume_signal or publish or wake)
        self.done = False
        self.control: str | None = None
        self.error: BaseException | None = None
        self.waiter: _thread.LockType | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        self.control = _apply(conn, self)


class _Create:
    """A new workflow (row and first events) waiting for a group commit."""

    __slots__ = ("done", "error", "events", "existing", "row", "waiter", "workflow_id")

    def __init__(self, row: WorkflowRow, events: list[NewEvent]) -> None:
        self.row, self.events, self.workflow_id = row, events, row.workflow_id
        self.done = False
        self.existing: WorkflowRow | None = None
        self.error: BaseException | None = None
        self.waiter: _thread.LockType | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        """Needs no savepoint: the first statement either inserts the row or writes
        nothing, and a new workflow's events cannot conflict with any in the log."""
        row = self.row
        if conn.execute(_CREATE_WORKFLOW, tuple(getattr(row, c) for c in WORKFLOW_COLUMNS)
                        ).rowcount == 0:
            found = conn.execute(
                f"{_SELECT_WORKFLOW} WHERE workflow_id = ?", (self.workflow_id,)
            ).fetchone()
            self.existing = WorkflowRow(*found)
            return
        _insert(conn, self.workflow_id, row.run, self.events, row.created)


_CREATE_WORKFLOW = (
    f"INSERT INTO workflows ({', '.join(WORKFLOW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(WORKFLOW_COLUMNS))}) ON CONFLICT (workflow_id) DO NOTHING"
)


_FAST_INSERT = (
    "INSERT INTO events (workflow_id, position, run, call, kind, name, digest, args, encoding, "
    "payload, created) SELECT ?, ?, run, ?, ?, ?, ?, ?, ?, ?, ? FROM workflows "
    "WHERE workflow_id = ? AND owner = ? AND control IS NULL"
)


def _fast_insert(conn: sqlite3.Connection, request: _Append) -> bool:
    """The common append in one statement; False when the full path must decide."""
    e = request.events[0]
    try:
        cursor = conn.execute(_FAST_INSERT, (
            request.workflow_id, e.position, e.call, e.kind, e.name, e.digest, e.args,
            e.encoding, e.payload, time.time(), request.workflow_id, request.owner,
        ))
    except sqlite3.IntegrityError as error:  # a position taken: another executor wrote
        raise Fenced(request.workflow_id) from error
    return cursor.rowcount == 1


def _apply(conn: sqlite3.Connection, request: _Append) -> str | None:
    """The full fenced append (see Store.append), inside the caller's transaction."""
    now = time.time()
    workflow_id, owner, events, update = (
        request.workflow_id, request.owner, request.events, request.update)
    found = conn.execute(
        "SELECT owner, control, run FROM workflows WHERE workflow_id = ?", (workflow_id,)
    ).fetchone()
    if found is None or found[0] != owner:
        raise Fenced(workflow_id)
    control, run = found[1], found[2]
    try:
        _insert(conn, workflow_id, run, events, now)
    except sqlite3.IntegrityError as error:  # a position taken: another executor wrote
        raise Fenced(workflow_id) from error
    if request.consume_signal is not None:
        conn.execute(
            "UPDATE signals SET consumed_position = ? WHERE id = ? AND consumed_position IS NULL",
            (events[0].position, request.consume_signal),
        )
    if request.publish is not None:
        conn.execute("INSERT OR REPLACE INTO published VALUES (?, ?, ?, ?, ?)",
                     (workflow_id, *request.publish, now))
    releases = update is not None and update.get("owner", owner) is None and (
        update.get("status") not in TERMINAL_STATUSES
    )
    if control == "cancel" and releases:
        update = None  # stay the owner: the caller unwinds into cancellation
    if control == "pause" and releases:
        update = {"status": "PAUSED", "owner": None, "wake_at": None,
                  "control": None, "waiting": "resume", "wait_signal": None}
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


def _insert(
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


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    if synchronous not in SYNCHRONOUS:
        from durable.errors import InvalidArgument

        raise InvalidArgument(
            f"synchronous={synchronous!r} is not one of 'full', 'normal'; "
            "use 'full' (survives power loss) or 'normal' (survives process crashes)."
        )
    if os.path.isdir(path):
        raise DatabaseError(path, "it is a directory")
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as error:
        raise DatabaseError(path, str(error)) from error
    try:
        # Read before anything writes: a file that is not SQLite fails here untouched. One
        # read transaction, so that another process creating the schema meanwhile is seen
        # whole or not at all (else: tables without a version, "another program's file").
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as error:
        conn.close()
        raise DatabaseError(path, f"not a SQLite database ({error})") from error
    if version > len(MIGRATIONS):
        conn.close()
        raise DatabaseError(path, f"its schema version {version} is newer than this durable's")
    if version == 0 and tables & {"workflows", "events", "signals"}:
        conn.close()
        raise DatabaseError(path, "it is a SQLite database of another program")
    try:
        _use_wal(conn)
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[synchronous]}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_FRAMES[synchronous]}")
        _migrate(conn, version)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise DatabaseError(path, str(error)) from error
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting for other processes that open it at the same time.

    Changing the journal mode needs an exclusive lock and fails at once with "database is
    locked" instead of waiting for the busy timeout: with many processes opening a new
    file together, all but one would fail. A file already in WAL is left alone.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _preallocate_wal(conn: sqlite3.Connection, path: str) -> None:
    """Grow a small WAL file to WAL_PREALLOCATE bytes of blocks on disk.

    A transaction that spills a zero blob into the WAL, then rolls back: the frames are
    never committed (nothing changes in the database, and recovery ignores them), but
    the file keeps its length. Later commits overwrite those blocks; see
    AUTOCHECKPOINT_FRAMES for why that halves the cost of their fsync.
    """
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) >= WAL_PREALLOCATE:
        return
    # Best effort, and quick: a busy database or a full disk only means slower commits.
    (cache,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute("PRAGMA busy_timeout = 100")
    conn.execute("PRAGMA cache_size = 1")  # every page spills to the WAL at once
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE durable_wal_scratch (b BLOB)")
        conn.execute("INSERT INTO durable_wal_scratch VALUES (zeroblob(?))", (WAL_PREALLOCATE,))
    except sqlite3.Error as error:
        log.debug("%s: WAL not preallocated (%s); commits are slower until it grows", path, error)
        return  # nothing was grown: nothing to sync
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute(f"PRAGMA cache_size = {cache}")
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    try:
        fd = os.open(wal, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # allocate the blocks now, not at the first commit's fdatasync
    finally:
        os.close(fd)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current == number:  # another process may have migrated meanwhile
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (``executescript`` would COMMIT on its own)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
