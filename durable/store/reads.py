"""Read-only questions about a whole database, for the dashboard and the metrics.

:class:`StoreReads` is the protocol; :mod:`durable.store.sqlite_reads` implements it for
SQLite (a PostgreSQL store implements the same methods). Each method is one read
transaction and returns plain dataclasses or tuples: no SQL text crosses the protocol.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from durable.replay import Recorded
from durable.store.rows import WorkflowRow


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """What the workflow list shows: every field left None matches everything.

    ``id_prefix`` matches the start of the id (an index range); ``search`` matches
    anywhere in the id (a scan, stopped by the page's limit).
    """

    status: str | None = None
    name: str | None = None
    id_prefix: str | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of the list ends: the (created, workflow_id) of its last row."""

    created: float
    workflow_id: str


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    """One page of the workflow list, newest first, and the cursor of the next page."""

    rows: list[WorkflowRow]
    next_cursor: Cursor | None


@dataclass(frozen=True, slots=True)
class Throughput:
    """Workflows started, finished (success) and failed in one time bucket."""

    start: float
    started: int = 0
    finished: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Published:
    """The latest value of one event a workflow published (``durable.set_event``)."""

    key: str
    encoding: str
    payload: Any
    updated: float


@dataclass(frozen=True, slots=True)
class SignalRow:
    """A signal sent to a workflow; ``consumed_position`` is None while it is queued."""

    signal_id: int
    name: str
    encoding: str
    payload: Any
    sent: float
    consumed_position: int | None


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One workflow of a tree of children: ``depth`` 0 is the root."""

    workflow_id: str
    parent_id: str | None
    name: str
    status: str
    depth: int


@dataclass(slots=True)
class StepStats:
    """Durations of the attempts of one step name, and how often it failed or retried.

    A duration is the time from the workflow's previous recorded event to the attempt's
    own event (the log records when a call ends, not when it begins): exact for steps
    run one after another, an upper bound for steps run in parallel.
    """

    name: str
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    total_seconds: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0
    #: counts of attempts with a duration <= each bound of ``buckets`` (cumulative).
    bucket_counts: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OldestWaiting:
    """The workflow that has waited longest (pending a claim, or waiting for something)."""

    workflow_id: str
    name: str
    status: str
    since: float
    waiting: str | None


class StoreReads(Protocol):
    """Read-only queries of the dashboard. Every method is one read transaction."""

    path: str

    def workflow(self, workflow_id: str) -> WorkflowRow | None:
        """One workflow's row."""

    def events(self, workflow_id: str, run: int | None = None) -> list[Recorded]:
        """The events of a workflow (of one run, if given), in log order."""

    def status_counts(self) -> dict[str, int]:
        """How many workflows are in each status (statuses with none are left out)."""

    def counts_by_name(self) -> list[tuple[str, str, int]]:
        """``(name, status, count)`` for every workflow name and status present."""

    def throughput(self, since: float, bucket_seconds: int) -> list[Throughput]:
        """Started, succeeded and failed workflows per bucket from ``since`` to now.

        Buckets with nothing are left out; a bucket's ``start`` is ``since`` plus a
        multiple of ``bucket_seconds``. Finishing time is the row's last update.
        """

    def latest_failures(self, limit: int) -> list[WorkflowRow]:
        """The most recently failed workflows, newest first, and those set aside with an
        error (diverged from their code, or unknown to their workers)."""

    def list_workflows(
        self, where: WorkflowFilter, after: Cursor | None, limit: int
    ) -> WorkflowPage:
        """A page of workflows matching ``where``, newest first, after ``after``."""

    def descendants(self, workflow_id: str, limit: int) -> list[TreeNode]:
        """The workflow and its children, their children..., depth first (up to ``limit``
        nodes); empty if the workflow does not exist."""

    def published_events(self, workflow_id: str) -> list[Published]:
        """Every event key a workflow published, with its latest value, by key."""

    def signal_inbox(self, workflow_id: str) -> list[SignalRow]:
        """Every signal sent to a workflow, in send order."""

    def event_count(self, workflow_id: str) -> int:
        """How many events the workflow's log holds (all runs)."""

    def events_after(self, workflow_id: str, after: int, limit: int) -> list[Recorded]:
        """Up to ``limit`` events with a position greater than ``after``, in log order."""

    def events_tail(self, workflow_id: str, limit: int) -> list[Recorded]:
        """The last ``limit`` events of the log, in log order."""

    def step_stats(self, since: float, buckets: tuple[float, ...]) -> list[StepStats]:
        """Duration statistics of every step name from events recorded since ``since``,
        slowest p95 first; ``bucket_counts`` follow ``buckets`` (sorted, seconds)."""

    def queue_depths(self) -> dict[str, int] | None:
        """Workflows not yet finished per queue, or None when the schema has no queues."""

    def oldest_waiting(self) -> OldestWaiting | None:
        """The unfinished, unowned workflow whose last change is oldest."""


def step_stats_of(rows: list[Any], buckets: Sequence[float]) -> list[StepStats]:
    """Per-step statistics from ``(step name, event kind, seconds since the previous
    event)`` rows, slowest p95 first (the same for every backend)."""
    durations: dict[str, list[float]] = {}
    stats: dict[str, StepStats] = {}
    for name, kind, seconds in rows:
        entry = stats.get(name)
        if entry is None:
            entry = stats[name] = StepStats(name)
            durations[name] = []
        entry.attempts += 1
        if kind == "step.retry":
            entry.retries += 1
        elif kind == "step.failed":
            entry.failures += 1
        seconds = max(0.0, float(seconds))
        entry.total_seconds += seconds
        durations[name].append(seconds)
    for name, entry in stats.items():
        values = sorted(durations[name])
        entry.p50 = _percentile(values, 0.50)
        entry.p95 = _percentile(values, 0.95)
        entry.max = values[-1]
        entry.bucket_counts = [bisect.bisect_right(values, bound) for bound in buckets]
    return sorted(stats.values(), key=lambda s: (-s.p95, s.name))


def _percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    if not values:
        return 0.0
    rank = max(0, min(len(values) - 1, round(fraction * len(values) + 0.5) - 1))
    return values[rank]
