"""The dashboard's read queries on PostgreSQL (see :class:`durable.store.reads.StoreReads`).

A mixin of :class:`~durable.store.postgres.PostgresStore`: every method is one statement
through ``self._read`` on a pooled connection. The SQL follows
:mod:`durable.store.sqlite_reads` statement by statement, except where SQLite's dialect
differs: minute buckets by FLOOR (a CAST rounds in PostgreSQL), an id prefix by
``starts_with`` (a collation may not sort code points), and the columns of a table from
the catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable.replay import Recorded, recorded_from_row
from durable.store import WORKFLOW_COLUMNS, WorkflowRow
from durable.store.postgres_commit import workflow_row
from durable.store.postgres_schema import untag
from durable.store.reads import (
    Cursor,
    OldestWaiting,
    Published,
    SignalRow,
    StepStats,
    Throughput,
    TreeNode,
    WorkflowFilter,
    WorkflowPage,
    step_stats_of,
)
from durable.store.sqlite_reads import MAX_TREE_DEPTH

if TYPE_CHECKING:
    from durable.store.postgres_commit import Sql

_COLUMNS = ", ".join(WORKFLOW_COLUMNS)
_EVENT_COLUMNS = "position, call, kind, name, digest, args, encoding, payload, created"
_WAITING_STATUSES = "('PENDING', 'WAITING', 'RETRYING', 'PAUSED')"
_STEP_KINDS = "('step.completed', 'step.failed', 'step.retry')"
_UNFINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"


def event_of(values: tuple[Any, ...]) -> Recorded:
    """An event from a row of its columns, its payload as written."""
    return recorded_from_row((*values[:7], untag(values[7]), values[8]))


class PostgresReads:
    """The :class:`~durable.store.reads.StoreReads` queries, for a store with ``_read``."""

    if TYPE_CHECKING:
        path: str
        _sql: Sql

        def _read(self, operation: str, query: str,
                  params: tuple[Any, ...] = ()) -> list[Any]: ...

    def _reads(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._read("reading for the dashboard", query, params)

    def workflow(self, workflow_id: str) -> WorkflowRow | None:
        rows = self._read("reading a workflow",
                          f"{self._sql.select_workflow} WHERE workflow_id = %s", (workflow_id,))
        return workflow_row(rows[0]) if rows else None

    def workflows(
        self, status: str | None, name: str | None, limit: int, parent_id: str | None = None
    ) -> list[WorkflowRow]:
        clauses, params = [], []
        for column, value in (("status", status), ("name", name), ("parent_id", parent_id)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            "listing workflows",
            f"{self._sql.select_workflow} {where} ORDER BY created DESC, workflow_id LIMIT %s",
            (*params, min(limit, 2**62)),
        )
        return [workflow_row(r) for r in rows]

    def status_counts(self) -> dict[str, int]:
        """How many workflows are in each status (statuses with none are left out)."""
        rows = self._reads(
            f"SELECT status, COUNT(*) FROM {self._sql.schema}.workflows GROUP BY status")
        return {status: int(count) for status, count in rows}

    def counts_by_name(self) -> list[tuple[str, str, int]]:
        """``(name, status, count)`` for every workflow name and status present."""
        rows = self._reads(f"SELECT name, status, COUNT(*) FROM {self._sql.schema}.workflows "
                           "GROUP BY name, status ORDER BY name")
        return [(name, status, int(count)) for name, status, count in rows]

    def throughput(self, since: float, bucket_seconds: int) -> list[Throughput]:
        """Started, succeeded and failed workflows per bucket from ``since`` to now."""
        s = self._sql.schema
        rows = self._reads(
            "SELECT FLOOR((created - %s) / %s)::bigint, 'STARTED', COUNT(*) "
            f"FROM {s}.workflows WHERE created >= %s GROUP BY 1 "
            "UNION ALL "
            "SELECT FLOOR((updated - %s) / %s)::bigint, status, COUNT(*) "
            f"FROM {s}.workflows WHERE status IN ('SUCCESS', 'FAILURE') AND updated >= %s "
            "GROUP BY 1, 2",
            (since, bucket_seconds, since, since, bucket_seconds, since),
        )
        buckets: dict[int, dict[str, int]] = {}
        for index, what, count in rows:
            buckets.setdefault(int(index), {})[what] = int(count)
        return [
            Throughput(since + index * bucket_seconds, counts.get("STARTED", 0),
                       counts.get("SUCCESS", 0), counts.get("FAILURE", 0))
            for index, counts in sorted(buckets.items())
        ]

    def latest_failures(self, limit: int) -> list[WorkflowRow]:
        """The most recently failed workflows and those set aside with an error."""
        s = self._sql.schema
        rows = self._reads(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM {s}.workflows "
            "WHERE status IN ('SUCCESS', 'FAILURE') AND status = 'FAILURE' "
            "ORDER BY updated DESC LIMIT %s) AS failed "
            f"UNION ALL SELECT * FROM (SELECT {_COLUMNS} FROM {s}.workflows "
            f"WHERE error IS NOT NULL AND owner IS NULL AND {_UNFINISHED} "
            "ORDER BY updated DESC LIMIT %s) AS set_aside "
            "ORDER BY updated DESC LIMIT %s",
            (limit, limit, limit),
        )
        return [workflow_row(r) for r in rows]

    def list_workflows(
        self, where: WorkflowFilter, after: Cursor | None, limit: int
    ) -> WorkflowPage:
        """A page of workflows matching ``where``, newest first, after ``after``."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.status:
            clauses.append("status = %s")
            params.append(where.status)
        if where.name:
            clauses.append("name = %s")
            params.append(where.name)
        if where.id_prefix:
            clauses.append("starts_with(workflow_id, %s)")
            params.append(where.id_prefix)
        if where.search:
            escaped = where.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("workflow_id LIKE %s ESCAPE '\\'")
            params.append(f"%{escaped}%")
        if after is not None:
            clauses.append("(created, workflow_id) < (%s, %s)")
            params += [after.created, after.workflow_id]
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._reads(
            f"SELECT {_COLUMNS} FROM {self._sql.schema}.workflows {condition} "
            "ORDER BY created DESC, workflow_id DESC LIMIT %s",
            (*params, limit + 1),
        )
        found = [workflow_row(r) for r in rows[:limit]]
        more = len(rows) > limit and found
        return WorkflowPage(
            found, Cursor(found[-1].created, found[-1].workflow_id) if more else None
        )

    def descendants(self, workflow_id: str, limit: int) -> list[TreeNode]:
        """The workflow and its children, their children..., depth first."""
        s = self._sql.schema
        rows = self._reads(
            "WITH RECURSIVE tree (workflow_id, parent_id, name, status, depth, path) AS ("
            " SELECT workflow_id, parent_id, name, status, 0, workflow_id"
            f" FROM {s}.workflows WHERE workflow_id = %s"
            " UNION ALL"
            " SELECT w.workflow_id, w.parent_id, w.name, w.status, t.depth + 1,"
            f" t.path || '/' || w.workflow_id FROM {s}.workflows w"
            " JOIN tree t ON w.parent_id = t.workflow_id WHERE t.depth < %s"
            ") SELECT workflow_id, parent_id, name, status, depth FROM tree "
            'ORDER BY path COLLATE "C" LIMIT %s',
            (workflow_id, MAX_TREE_DEPTH, limit),
        )
        return [TreeNode(*r) for r in rows]

    def published_events(self, workflow_id: str) -> list[Published]:
        """Every event key a workflow published, with its latest value, by key."""
        rows = self._reads(
            f"SELECT key, encoding, payload, updated FROM {self._sql.schema}.published "
            'WHERE workflow_id = %s ORDER BY key COLLATE "C"', (workflow_id,))
        return [Published(key, encoding, untag(payload), updated)
                for key, encoding, payload, updated in rows]

    def signal_inbox(self, workflow_id: str) -> list[SignalRow]:
        """Every signal sent to a workflow, in send order."""
        rows = self._reads(
            "SELECT id, name, encoding, payload, sent, consumed_position FROM "
            f"{self._sql.schema}.signals WHERE workflow_id = %s ORDER BY id", (workflow_id,))
        return [SignalRow(i, name, encoding, untag(payload), sent, consumed)
                for i, name, encoding, payload, sent, consumed in rows]

    def event_count(self, workflow_id: str) -> int:
        """How many events the workflow's log holds (all runs)."""
        rows = self._reads(f"SELECT COUNT(*) FROM {self._sql.schema}.events "
                           "WHERE workflow_id = %s", (workflow_id,))
        return int(rows[0][0])

    def events_after(self, workflow_id: str, after: int, limit: int) -> list[Recorded]:
        """Up to ``limit`` events with a position greater than ``after``, in log order."""
        rows = self._reads(
            f"SELECT {_EVENT_COLUMNS} FROM {self._sql.schema}.events WHERE workflow_id = %s "
            "AND position > %s ORDER BY position LIMIT %s", (workflow_id, after, limit))
        return list(map(event_of, rows))

    def events_tail(self, workflow_id: str, limit: int) -> list[Recorded]:
        """The last ``limit`` events of the log, in log order."""
        rows = self._reads(
            f"SELECT {_EVENT_COLUMNS} FROM {self._sql.schema}.events WHERE workflow_id = %s "
            "ORDER BY position DESC LIMIT %s", (workflow_id, limit))
        return list(map(event_of, reversed(rows)))

    def step_stats(self, since: float, buckets: tuple[float, ...]) -> list[StepStats]:
        """Duration statistics of every step name from events recorded since ``since``."""
        s = self._sql.schema
        # Positions are gapless: the previous event is the one at position - 1.
        rows = self._reads(
            f"SELECT e.name, e.kind, e.created - p.created FROM {s}.events e "
            f"JOIN {s}.events p ON p.workflow_id = e.workflow_id "
            "AND p.position = e.position - 1 "
            f"WHERE e.kind IN {_STEP_KINDS} AND e.created >= %s", (since,))
        return step_stats_of(rows, buckets)

    def queue_depths(self) -> dict[str, int] | None:
        """Workflows not yet finished per queue, or None when the schema has no queues."""
        schema = self._sql.schema.strip('"')
        if not self._reads(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = 'workflows' AND column_name = 'queue'", (schema,)):
            return None
        rows = self._reads(
            f"SELECT queue, COUNT(*) FROM {self._sql.schema}.workflows WHERE queue IS NOT NULL "
            f"AND {_UNFINISHED} GROUP BY queue")
        return {str(queue): int(count) for queue, count in rows}

    def oldest_waiting(self) -> OldestWaiting | None:
        """The unfinished, unowned workflow whose last change is oldest."""
        rows = self._reads(
            f"SELECT workflow_id, name, status, updated, waiting FROM {self._sql.schema}"
            f".workflows WHERE status IN {_WAITING_STATUSES} AND owner IS NULL "
            "ORDER BY updated LIMIT 1")
        return OldestWaiting(*rows[0]) if rows else None
