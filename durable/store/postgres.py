"""The PostgreSQL store: many worker processes on many machines share one database.

Claims take rows with ``FOR UPDATE SKIP LOCKED``, so engines never wait for each other's
claims; every append is fenced (owner and lease checked) in its own transaction's row
lock; appends and starts of many workflows share one transaction (group commit, a
savepoint around each request that may fail). Wake-ups travel by LISTEN/NOTIFY
(:mod:`durable.store.postgres_listen`); the engine's poll is only a safety net.

Connections per store: a pool (``?pool_min=1&pool_max=8`` in the URL) for reads and
writes, plus one direct connection for LISTEN. A lost connection is replaced by the pool; reads are
retried, and a write whose outcome is unknown hands its workflow back to the claim
(the lease is ended) so that no workflow is stranded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.conninfo import make_conninfo

from durable.errors import EngineClosed, StorageError
from durable.replay import Recorded
from durable.store import Fenced, NewEvent, StorageFailed, WorkflowRow
from durable.store.cache import RunCache
from durable.store.postgres_commit import (
    Append,
    Create,
    GroupCommit,
    Request,
    Sql,
    fast_insert,
    workflow_row,
)
from durable.store.postgres_listen import Listener
from durable.store.postgres_ops import PostgresOps
from durable.store.postgres_outside import Outside
from durable.store.postgres_reads import PostgresReads, event_of
from durable.store.postgres_schema import (
    CONNECT_TIMEOUT,
    mapped,
    migrate,
    parse_url,
    storage_error,
    tag,
)

log = logging.getLogger("durable")
T = TypeVar("T")

#: Group commits in flight at once, each on its own pooled connection. 2 measured no
#: faster on this 2-core machine (CPU-bound): more, smaller transactions.
LEADERS = 1
#: Seconds a call waits for a pooled connection (the server restarting) before failing.
POOL_TIMEOUT = 15.0
#: Attempts of a read (or of an idempotent write) over broken connections.
ATTEMPTS = 4
_UNFINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"
_EVENT_COLUMNS = "position, call, kind, name, digest, args, encoding, payload, created"


class PostgresStore(PostgresReads, PostgresOps, Outside):
    """The event log in one PostgreSQL schema (see :class:`durable.store.Store`)."""

    #: Only a safety net: LISTEN/NOTIFY wakes the engine when work appears.
    poll_interval = 1.0

    def __init__(self, url: str, synchronous: str = "full", read_only: bool = False) -> None:
        """``read_only``: for inspection: no migration, and every transaction is read-only
        (a write raises StorageError)."""
        self.target = parse_url(url)
        self.path = self.target.shown  # never a password: it goes into messages
        self.read_only = read_only
        self._sql = Sql(self.target.schema)
        # A clear StorageError within the connect timeout if unreachable.
        migrate(self.target, check_only=read_only)
        relaxed = synchronous == "normal"

        # The payload of this store's NOTIFYs: its listener ignores them, since this
        # store's engine already knows what it did itself.
        self._token = uuid.uuid4().hex[:16]

        def configure(conn: psycopg.Connection[Any]) -> None:
            if relaxed:
                conn.execute("SET synchronous_commit = off")
            if read_only:
                conn.execute("SET default_transaction_read_only = on")

        self._pool = psycopg_pool.ConnectionPool(
            make_conninfo(self.target.conninfo, application_name=f"durable {self.target.schema}"),
            min_size=self.target.pool_min, max_size=self.target.pool_max, open=False,
            timeout=POOL_TIMEOUT, kwargs={"autocommit": True}, configure=configure,
            name=f"durable-{self.target.schema}",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT + 1)
        except psycopg_pool.PoolTimeout as error:
            self._pool.close()
            raise storage_error(self.target.label, "opening the pool", str(error)) from error
        self._listener = Listener(self.target, ignore=self._token)
        self._group = GroupCommit(lambda batch: self._commit(batch), self._not_written,
                                  leaders=LEADERS)
        self._closed = False
        self._runs = RunCache()
        self._runs_lock = threading.Lock()
        # Writes whose outcome is unknown (the connection broke during their commit):
        # their workflows are handed back (lease ended) once the database answers.
        self._lost: set[tuple[str, str]] = set()
        self._lost_claims: list[tuple[str, float]] = []
        self._lost_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def _connection(self, operation: str) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise EngineClosed(self.path)
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as error:
            raise storage_error(self.target.label, operation,
                               f"no connection within {POOL_TIMEOUT:.0f} s ({error})") from error
        except psycopg_pool.PoolClosed as error:
            raise EngineClosed(self.path) from error

    def _run(self, operation: str, fn: Callable[[psycopg.Connection[Any]], T],
             retry: bool = True) -> T:
        """``fn`` on a pooled connection; retried over broken connections if ``retry``
        (reads, and writes that may run twice), else a StorageError at once."""
        delay = 0.05
        for attempt in range(ATTEMPTS):
            try:
                with self._connection(operation) as conn:
                    return fn(conn)
            except psycopg.OperationalError as error:
                if not self._closed:
                    self._pool.check()  # drop every broken idle connection at once
                if not retry or attempt == ATTEMPTS - 1 or self._closed:
                    raise storage_error(self.target.label, operation, _reason(error)) from error
                time.sleep(delay)
                delay *= 4
            except (psycopg.Error, UnicodeEncodeError) as error:
                raise mapped(self.target.label, operation, error) from error
        raise AssertionError("unreachable")

    def _read(self, operation: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._run(operation, lambda conn: conn.execute(query, params).fetchall())

    def _write(self, operation: str, fn: Callable[[psycopg.Cursor[Any]], T],
               retry: bool = True, notify: bool = False, sync: bool = True) -> T:
        """``fn`` in one transaction (and NOTIFY the channel at its commit, if asked).

        ``sync=False``: the commit does not wait for its WAL flush, for writes that may be
        lost with the server (claims, renewals: fencing makes a lost one harmless). The
        WAL is sequential, so any later synced commit makes this one durable too."""
        def run(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction(), conn.cursor() as cur:
                if not sync:
                    cur.execute("SET LOCAL synchronous_commit = off")
                result = fn(cur)
                if notify:
                    self._notify(cur)
                return result

        return self._run(operation, run, retry)

    def _notify(self, cur: psycopg.Cursor[Any]) -> None:
        """NOTIFY the other engines at this transaction's commit (once: PostgreSQL drops
        the same notification sent twice in one transaction)."""
        cur.execute("SELECT pg_notify(%s, %s)", (self.target.channel, self._token))

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._listener.subscribe(callback)

    def close(self) -> None:
        if self._closed:
            return
        self._listener.stop(self._send_stop)
        self._closed = True
        self._pool.close()

    def _send_stop(self, payload: str) -> None:
        with self._pool.connection(timeout=1.0) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (self.target.channel, payload))

    # -- workflows --------------------------------------------------------------

    def create_workflow(self, row: WorkflowRow, events: list[NewEvent],
                        publish: list[tuple[str, str, Any]] | None = None
                        ) -> WorkflowRow | None:
        request = Create(row, events, publish)
        self._group.submit(request)  # group-committed with appends
        return request.existing

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[WorkflowRow]:
        self._repair()
        s, columns = self._sql.schema, self._sql.select_workflow[len("SELECT "):].split(" FROM ")[0]
        query = f"""
            WITH picked AS (
                SELECT {columns} FROM {s}.workflows
                WHERE wake_at <= %(now)s AND (owner IS NULL OR lease_until < %(now)s)
                ORDER BY wake_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
            ), paused AS (
                UPDATE {s}.workflows w SET status = 'PAUSED', owner = NULL, wake_at = NULL,
                    control = NULL, waiting = 'resume', updated = %(now)s
                FROM picked p WHERE w.workflow_id = p.workflow_id AND p.control = 'pause'
            ), claimed AS (
                UPDATE {s}.workflows w SET owner = %(owner)s, lease_until = %(lease)s,
                    status = 'RUNNING', error = NULL,
                    -- its last executor died while running it: count recoveries without
                    -- progress, so a workflow that kills its process cannot loop forever
                    recoveries = CASE WHEN p.owner IS NULL THEN p.recoveries
                        WHEN last.position > p.progress THEN 1 ELSE p.recoveries + 1 END,
                    progress = CASE WHEN p.owner IS NULL THEN p.progress
                        ELSE last.position END,
                    updated = %(now)s, dequeued = COALESCE(w.dequeued, %(now)s)
                FROM picked p, LATERAL (SELECT COALESCE(MAX(e.position), 0) AS position
                    FROM {s}.events e WHERE e.workflow_id = p.workflow_id) last
                WHERE w.workflow_id = p.workflow_id AND p.control IS DISTINCT FROM 'pause'
                RETURNING w.workflow_id, w.recoveries, w.progress
            )
            SELECT p.*, c.recoveries, c.progress FROM picked p
            JOIN claimed c USING (workflow_id) ORDER BY p.wake_at"""
        params = {"now": now, "limit": limit, "owner": owner, "lease": lease_until}
        try:
            rows = self._write("claiming workflows",
                               lambda cur: cur.execute(query, params).fetchall(), retry=False,
                               sync=False)
        except StorageError:
            with self._lost_lock:  # it may have committed: hand back what it took
                self._lost_claims.append((owner, now))
            raise
        claimed = []
        for values in rows:
            row = workflow_row(values[:-2])
            row.recoveries, row.progress = values[-2], values[-1]
            row.owner, row.lease_until = owner, lease_until
            claimed.append(row)
        return claimed

    def _repair(self) -> None:
        """Hand back the workflows of writes whose outcome is unknown (see __init__)."""
        with self._lost_lock:
            lost, self._lost = self._lost, set()
            claims, self._lost_claims = self._lost_claims, []
        if not lost and not claims:
            return
        s = self._sql.schema

        def hand_back(cur: psycopg.Cursor[Any]) -> None:
            for owner, workflow_id in lost:  # as after a crash: recovered, and counted
                cur.execute(f"UPDATE {s}.workflows SET lease_until = 0, wake_at = "
                            "COALESCE(wake_at, %s) WHERE owner = %s AND workflow_id = %s",
                            (time.time(), owner, workflow_id))
            for owner, now in claims:  # never started here: released, not counted
                cur.execute(f"UPDATE {s}.workflows SET owner = NULL WHERE owner = %s "
                            "AND updated = %s AND status = 'RUNNING'", (owner, now))

        try:
            self._write("handing back workflows after a lost connection", hand_back,
                        notify=True)
        except BaseException:
            with self._lost_lock:
                self._lost |= lost
                self._lost_claims.extend(claims)
            raise

    def next_wake(self, now: float) -> float | None:
        s = self._sql.schema  # a timer, or a queued start deferred to its time
        rows = self._read("reading the next timer",
                          f"SELECT LEAST((SELECT MIN(wake_at) FROM {s}.workflows "
                          f"WHERE wake_at > %s), (SELECT MIN(start_at) FROM {s}.workflows "
                          "WHERE status = 'ENQUEUED' AND start_at > %s))", (now, now))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def renew(self, owner: str, lease_until: float, workflow_ids: Collection[str]) -> None:
        self._repair()
        if not workflow_ids:
            return
        s = self._sql.schema
        # Rows locked by an append in progress are skipped (renewed at the next beat):
        # waiting for them could deadlock with a group commit that holds several.
        self._write("renewing leases", lambda cur: cur.execute(
            f"UPDATE {s}.workflows SET lease_until = %s WHERE workflow_id IN (SELECT "
            f"workflow_id FROM {s}.workflows WHERE owner = %s AND lease_until > 0 "
            "AND workflow_id = ANY(%s) FOR UPDATE SKIP LOCKED)",
            (lease_until, owner, list(workflow_ids))), sync=False)

    def crashed(self, owner: str, workflow_id: str, retry_at: float) -> None:
        try:
            self._write("marking a workflow for a retry", lambda cur: cur.execute(
                f"UPDATE {self._sql.schema}.workflows SET lease_until = 0, wake_at = %s "
                "WHERE owner = %s AND workflow_id = %s", (retry_at, owner, workflow_id)),
                notify=True)
        except StorageError:
            with self._lost_lock:
                self._lost.add((owner, workflow_id))
            raise

    # -- the log ----------------------------------------------------------------

    def events(self, workflow_id: str, run: int | None = None) -> list[Recorded]:
        s = self._sql.schema
        if run is None:
            rows = self._read("reading events", f"SELECT {_EVENT_COLUMNS} FROM {s}.events "
                              "WHERE workflow_id = %s ORDER BY position", (workflow_id,))
            return list(map(event_of, rows))
        with self._runs_lock:  # a run is read from where the cache of its start ends
            known = self._runs.known(workflow_id, run)
        after = known[-1].position if known else -1
        rows = self._read("reading events", f"SELECT {_EVENT_COLUMNS} FROM {s}.events WHERE "
                          "workflow_id = %s AND run = %s AND position > %s ORDER BY position",
                          (workflow_id, run, after))
        with self._runs_lock:
            return self._runs.read(workflow_id, run, known, list(map(event_of, rows)))

    def last_position(self, workflow_id: str) -> int:
        rows = self._read("reading events", f"SELECT COALESCE(MAX(position), -1) FROM "
                          f"{self._sql.schema}.events WHERE workflow_id = %s", (workflow_id,))
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
        self._group.submit(request)
        return request.control

    def _not_written(self, request: Request) -> BaseException:
        if isinstance(request, Create):
            return EngineClosed(self.path) if self._closed else storage_error(
                self.target.label, "starting a workflow", "the commit was interrupted")
        return Fenced(request.workflow_id,
                      "the engine was closed" if self._closed else "the commit was interrupted")

    def _commit(self, batch: list[Request]) -> None:
        """The group commit's transaction (see GroupCommit): requests that may fail run
        under a savepoint each; one NOTIFY at the commit if any other engine must know.
        A deadlock or serialization failure rolled all of it back: it is tried again; so
        is a batch whose pipelined appends met a value that cannot be stored, without the
        pipeline (each request under its savepoint: the bad one fails alone)."""
        if self._closed:
            return  # each request fails as not written (see _not_written)
        pipelined = True
        try:
            for attempt in range(ATTEMPTS):
                try:
                    self._commit_once(batch, pipelined)
                    return
                except (psycopg.Error, UnicodeEncodeError) as error:
                    state = getattr(error, "sqlstate", None) or ""
                    bad_value = isinstance(error, UnicodeEncodeError) or state[:2] in ("22", "23")
                    if pipelined and bad_value and len(batch) > 1:
                        pipelined = False
                    # Class 40 (deadlock, serialization failure): rolled back, safe to retry.
                    elif not state.startswith("40") or attempt == ATTEMPTS - 1:
                        raise
                    for request in batch:  # nothing of it was kept: start over
                        request.error = None
                        if isinstance(request, Create):
                            request.existing = None
        except (psycopg.Error, StorageError) as error:
            # Nothing of this batch may be assumed durable (the COMMIT's answer may have
            # been lost: then it was). Fenced stops each executor without writing; its
            # workflow is handed back once the database answers, and recovered by replay.
            reason = _reason(error.__cause__ or error) if isinstance(error, StorageError) \
                else _reason(error)
            if isinstance(error, psycopg.OperationalError) and not self._closed:
                self._pool.check()  # the next batch gets a connection that works
            with self._lost_lock:
                for request in batch:
                    owner = request.owner if isinstance(request, Append) else request.row.owner
                    if request.error is None and owner is not None:
                        self._lost.add((owner, request.workflow_id))
            for request in batch:
                if isinstance(request, Create):
                    what = f"starting workflow {request.workflow_id!r}"
                    request.error = request.error or storage_error(self.target.label, what,
                                                                   reason)
                else:
                    what = f"recording events of workflow {request.workflow_id!r}"
                    request.error = request.error or StorageFailed(
                        request.workflow_id, storage_error(self.target.label, what, reason))
        except BaseException as error:
            for request in batch:
                request.error = request.error or error
        finally:
            for request in batch:
                request.done = True

    def _commit_once(self, batch: list[Request], pipelined: bool = True) -> None:
        sql, first = self._sql, batch[0]
        with self._connection("committing") as conn, conn.cursor() as cur:
            # One event, nothing else: a single fenced statement, its own transaction
            # (one round trip). It inserts nothing if we lost the workflow, a control
            # request waits or the position is taken; then the full path finds out.
            if len(batch) == 1 and isinstance(first, Append) and first.simple:
                try:
                    if fast_insert(cur, sql, first):
                        return
                except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as error:
                    first.error = self._typed(first, error)
                    return
            if len(batch) == 1:  # alone: its own transaction, no savepoint needed
                try:
                    with conn.transaction():
                        first.apply(cur, sql)
                        if first.notifies:
                            self._notify(cur)
                except (Fenced, psycopg.DataError, psycopg.IntegrityError,
                        UnicodeEncodeError) as error:
                    first.error = self._typed(first, error)
                return
            with conn.transaction():
                self._apply_batch(conn, cur, batch, pipelined)

    def _apply_batch(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any],
                     batch: list[Request], pipelined: bool) -> None:
        notify = False
        inserted = self._fast_inserts(conn, batch) if pipelined else set()
        for request in batch:
            if request in inserted:
                continue
            try:
                with conn.transaction():  # a savepoint: a failure undoes this request only
                    request.apply(cur, self._sql)
                notify = notify or request.notifies
            except (Fenced, psycopg.DataError, psycopg.IntegrityError,
                    UnicodeEncodeError) as error:
                request.error = self._typed(request, error)
        if notify:
            self._notify(cur)

    def _fast_inserts(self, conn: psycopg.Connection[Any], batch: list[Request]) -> set[Request]:
        """The one-event appends at the head of the batch, pipelined: one round trip for
        all of them. Only the head: a later one may follow a request that changes its
        workflow (a release), and must then see that change."""
        head: list[Append] = []
        for request in batch:
            if not (isinstance(request, Append) and request.simple):
                break
            head.append(request)
        if len(head) < 2:
            return set()
        cursors = []
        with conn.pipeline():
            for request in head:
                cur = conn.cursor()
                e = request.events[0]
                cur.execute(self._sql.fast_insert, (
                    request.workflow_id, e.position, e.call, e.kind, e.name, e.digest, e.args,
                    e.encoding, tag(e.payload), request.time(), request.workflow_id,
                    request.owner))
                cursors.append(cur)
        return {request for request, cur in zip(head, cursors, strict=True)
                if cur.rowcount == 1}

    def _typed(self, request: Request, error: BaseException) -> BaseException:
        """The error of one request that failed alone: Fenced as it is; InvalidArgument
        for a value that cannot be stored; else StorageFailed in a run, StorageError for
        a start."""
        if isinstance(error, Fenced):
            return error
        if isinstance(request, Create):
            return mapped(self.target.label, f"starting workflow {request.workflow_id!r}",
                          error)
        durable_error = mapped(self.target.label,
                               f"recording events of workflow {request.workflow_id!r}", error)
        if isinstance(durable_error, StorageError):
            return StorageFailed(request.workflow_id, durable_error)
        return durable_error


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
