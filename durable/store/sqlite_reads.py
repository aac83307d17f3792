"""The dashboard's read queries on SQLite (see :class:`durable.store.reads.StoreReads`).

A mixin of :class:`~durable.store.sqlite.SQLiteStore`: every method is one statement
through ``self._read``, on the store's reader connection, so that it never waits behind
a commit. The SQL stays plain (window functions, recursive CTEs, row comparisons), which
PostgreSQL runs as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable.replay import Recorded, recorded_from_row
from durable.store import WORKFLOW_COLUMNS, WorkflowRow
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

_COLUMNS = ", ".join(WORKFLOW_COLUMNS)
_EVENT_COLUMNS = "position, call, kind, name, digest, args, encoding, payload, created"
#: The largest code point: ``prefix + _TOP`` sorts after every id that starts with prefix.
_TOP = "\U0010ffff"
_WAITING_STATUSES = "('PENDING', 'WAITING', 'RETRYING', 'PAUSED')"
_STEP_KINDS = "('step.completed', 'step.failed', 'step.retry')"
#: How deep a tree of children is followed (a cycle cannot happen; a bound all the same).
MAX_TREE_DEPTH = 64


class SQLiteReads:
    """The :class:`~durable.store.reads.StoreReads` queries, for a store with ``_read``."""

    if TYPE_CHECKING:
        path: str

        def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    def status_counts(self) -> dict[str, int]:
        """How many workflows are in each status (statuses with none are left out)."""
        rows = self._read("SELECT status, COUNT(*) FROM workflows GROUP BY status")
        return {status: count for status, count in rows}

    def counts_by_name(self) -> list[tuple[str, str, int]]:
        """``(name, status, count)`` for every workflow name and status present."""
        rows = self._read(
            "SELECT name, status, COUNT(*) FROM workflows GROUP BY name, status ORDER BY name"
        )
        return [(name, status, count) for name, status, count in rows]

    def throughput(self, since: float, bucket_seconds: int) -> list[Throughput]:
        """Started, succeeded and failed workflows per bucket from ``since`` to now."""
        rows = self._read(
            "SELECT CAST((created - ?) / ? AS INTEGER), 'STARTED', COUNT(*) FROM workflows "
            "WHERE created >= ? GROUP BY 1 "
            "UNION ALL "
            "SELECT CAST((updated - ?) / ? AS INTEGER), status, COUNT(*) FROM workflows "
            "WHERE status IN ('SUCCESS', 'FAILURE') AND updated >= ? GROUP BY 1, 2",
            (since, bucket_seconds, since, since, bucket_seconds, since),
        )
        buckets: dict[int, dict[str, int]] = {}
        for index, what, count in rows:
            buckets.setdefault(int(index), {})[what] = count
        return [
            Throughput(since + index * bucket_seconds, counts.get("STARTED", 0),
                       counts.get("SUCCESS", 0), counts.get("FAILURE", 0))
            for index, counts in sorted(buckets.items())
        ]

    def latest_failures(self, limit: int) -> list[WorkflowRow]:
        """The most recently failed workflows and those set aside with an error."""
        # "status IN (...) AND status = ..." and "error IS NOT NULL" repeat the conditions
        # of the partial indexes workflows_ended and workflows_set_aside, so that SQLite
        # reads the newest rows of those small indexes instead of sorting every failure.
        rows = self._read(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM workflows "
            "WHERE status IN ('SUCCESS', 'FAILURE') AND status = 'FAILURE' "
            "ORDER BY updated DESC LIMIT ?) AS failed "
            f"UNION ALL SELECT * FROM (SELECT {_COLUMNS} FROM workflows "
            "WHERE error IS NOT NULL AND owner IS NULL "
            "AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED') "
            "ORDER BY updated DESC LIMIT ?) AS set_aside "
            "ORDER BY updated DESC LIMIT ?",
            (limit, limit, limit),
        )
        return [WorkflowRow(*r) for r in rows]

    def list_workflows(
        self, where: WorkflowFilter, after: Cursor | None, limit: int
    ) -> WorkflowPage:
        """A page of workflows matching ``where``, newest first, after ``after``."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.status:
            clauses.append("status = ?")
            params.append(where.status)
        if where.name:
            clauses.append("name = ?")
            params.append(where.name)
        if where.id_prefix:
            clauses.append("workflow_id >= ? AND workflow_id < ?")
            params += [where.id_prefix, where.id_prefix + _TOP]
        if where.search:
            escaped = where.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("workflow_id LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        if after is not None:
            # "created <= ?" first: a range the index can seek to, with or without ANALYZE
            clauses.append("created <= ? AND (created < ? OR (created = ? AND workflow_id < ?))")
            params += [after.created, after.created, after.created, after.workflow_id]
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM workflows {condition} "
            "ORDER BY created DESC, workflow_id DESC LIMIT ?",
            (*params, limit + 1),
        )
        found = [WorkflowRow(*r) for r in rows[:limit]]
        more = len(rows) > limit and found
        return WorkflowPage(
            found, Cursor(found[-1].created, found[-1].workflow_id) if more else None
        )

    def descendants(self, workflow_id: str, limit: int) -> list[TreeNode]:
        """The workflow and its children, their children..., depth first."""
        rows = self._read(
            "WITH RECURSIVE tree (workflow_id, parent_id, name, status, depth, path) AS ("
            " SELECT workflow_id, parent_id, name, status, 0, workflow_id FROM workflows"
            " WHERE workflow_id = ?"
            " UNION ALL"
            " SELECT w.workflow_id, w.parent_id, w.name, w.status, t.depth + 1,"
            " t.path || '/' || w.workflow_id FROM workflows w"
            " JOIN tree t ON w.parent_id = t.workflow_id WHERE t.depth < ?"
            ") SELECT workflow_id, parent_id, name, status, depth FROM tree ORDER BY path LIMIT ?",
            (workflow_id, MAX_TREE_DEPTH, limit),
        )
        return [TreeNode(*r) for r in rows]

    def published_events(self, workflow_id: str) -> list[Published]:
        """Every event key a workflow published, with its latest value, by key."""
        rows = self._read(
            "SELECT key, encoding, payload, updated FROM published WHERE workflow_id = ? "
            "ORDER BY key",
            (workflow_id,),
        )
        return [Published(*r) for r in rows]

    def signal_inbox(self, workflow_id: str) -> list[SignalRow]:
        """Every signal sent to a workflow, in send order."""
        rows = self._read(
            "SELECT id, name, encoding, payload, sent, consumed_position FROM signals "
            "WHERE workflow_id = ? ORDER BY id",
            (workflow_id,),
        )
        return [SignalRow(*r) for r in rows]

    def event_count(self, workflow_id: str) -> int:
        """How many events the workflow's log holds (all runs)."""
        rows = self._read("SELECT COUNT(*) FROM events WHERE workflow_id = ?", (workflow_id,))
        return int(rows[0][0])

    def events_after(self, workflow_id: str, after: int, limit: int) -> list[Recorded]:
        """Up to ``limit`` events with a position greater than ``after``, in log order."""
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE workflow_id = ? AND position > ? "
            "ORDER BY position LIMIT ?",
            (workflow_id, after, limit),
        )
        return list(map(recorded_from_row, rows))

    def events_tail(self, workflow_id: str, limit: int) -> list[Recorded]:
        """The last ``limit`` events of the log, in log order."""
        rows = self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE workflow_id = ? "
            "ORDER BY position DESC LIMIT ?",
            (workflow_id, limit),
        )
        return list(map(recorded_from_row, reversed(rows)))

    def step_stats(self, since: float, buckets: tuple[float, ...]) -> list[StepStats]:
        """Duration statistics of every step name from events recorded since ``since``."""
        # Positions are gapless: the previous event is the one at position - 1 (a join on
        # the primary key, about 4x faster in SQLite than LAG() over the whole log).
        rows = self._read(
            "SELECT e.name, e.kind, e.created - p.created FROM events e "
            "JOIN events p ON p.workflow_id = e.workflow_id AND p.position = e.position - 1 "
            f"WHERE e.kind IN {_STEP_KINDS} AND e.created >= ?",
            (since,),
        )
        return step_stats_of(rows, buckets)

    def queue_depths(self) -> dict[str, int] | None:
        """Workflows not yet finished per queue, or None when the schema has no queues."""
        columns = {r[1] for r in self._read("PRAGMA table_info(workflows)")}
        if "queue" not in columns:
            return None
        rows = self._read(
            "SELECT queue, COUNT(*) FROM workflows WHERE queue IS NOT NULL "
            "AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED') GROUP BY queue"
        )
        return {str(queue): count for queue, count in rows}

    def oldest_waiting(self) -> OldestWaiting | None:
        """The unfinished, unowned workflow whose last change is oldest."""
        rows = self._read(
            "SELECT workflow_id, name, status, updated, waiting FROM workflows "
            f"WHERE status IN {_WAITING_STATUSES} AND owner IS NULL ORDER BY updated LIMIT 1"
        )
        return OldestWaiting(*rows[0]) if rows else None

