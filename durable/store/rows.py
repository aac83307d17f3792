"""The rows the store keeps and the events it appends: shared by the protocol and its
backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from durable.errors import Unwind

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELLED", "SKIPPED"})


class Fenced(Unwind):
    """This engine no longer owns the workflow: it must stop without writing.

    A ``BaseException`` so that user code cannot swallow it.
    """

    def __init__(self, workflow_id: str, reason: str = "it is owned by another executor") -> None:
        self.workflow_id, self.reason = workflow_id, reason
        super().__init__(f"workflow {workflow_id!r} cannot be written: {reason}")


class StorageFailed(Fenced):
    """An append failed in the storage (disk full, I/O error, read-only file): nothing of
    it was written. It unwinds the run like :class:`Fenced`, and the engine then releases
    the workflow for a retry with backoff. ``error`` is the StorageError."""

    def __init__(self, workflow_id: str, error: Exception) -> None:
        self.error = error
        super().__init__(workflow_id, f"storage: {error}")


@dataclass(slots=True)
class WorkflowRow:
    """The status projection of one workflow."""

    workflow_id: str
    name: str
    status: str
    run: int
    input_encoding: str
    input: Any
    output_encoding: str | None
    output: Any
    error: str | None
    owner: str | None
    lease_until: float | None
    wake_at: float | None
    wait_signal: str | None
    waiting: str | None
    control: str | None
    recoveries: int
    progress: int
    parent_id: str | None
    deadline: float | None
    created: float
    updated: float
    queue: str | None = None
    priority: int = 0
    dedup_id: str | None = None
    start_at: float | None = None  # a deferred start: not dequeued before this time
    dequeued: float | None = None  # when it left ENQUEUED (queues count these)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


WORKFLOW_COLUMNS = tuple(WorkflowRow.__dataclass_fields__)


class NewEvent(NamedTuple):
    """An event to append: the store adds workflow id, run and time."""

    position: int
    call: int
    kind: str
    name: str
    digest: str = ""
    args: str = ""
    encoding: str = "json"
    payload: Any = None
    run: int | None = None  # default: the workflow's current run


class QueueLimits(NamedTuple):
    """A queue as a worker serves it: its name and limits (None: no limit)."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_count: int | None = None
    rate_per: float | None = None
    priority: bool = True


@dataclass(slots=True)
class ScheduleRow:
    """A stored cron schedule: ``workflow`` started with its input at each tick."""

    name: str
    cron: str
    timezone: str
    missed: str
    workflow: str
    input_encoding: str
    input: Any
    next_at: float  # the next tick not yet started
    declared: bool  # from @durable.scheduled (re-declared by each worker) or engine.schedule
    created: float
    updated: float


SCHEDULE_COLUMNS = tuple(ScheduleRow.__dataclass_fields__)


class AppendRequest:
    """One append waiting for a backend's group commit: what to write, and its answer
    (``control``, ``error``) once ``done``. Each backend adds how it applies it."""

    __slots__ = ("consume_signal", "control", "done", "error", "events", "now", "owner",
                 "publish", "recheck", "simple", "update", "wake", "workflow_id")

    def __init__(self, workflow_id: str, owner: str, events: list[NewEvent],
                 update: dict[str, Any] | None, consume_signal: int | None,
                 publish: tuple[str, str, Any] | None, recheck: tuple[str, str] | None,
                 wake: str | None, now: float | None = None) -> None:
        self.workflow_id, self.owner, self.events, self.update = workflow_id, owner, events, update
        self.consume_signal, self.publish, self.recheck, self.wake = (
            consume_signal, publish, recheck, wake)
        self.now = now  # the engine's clock; None: time.time() at commit
        self.simple = len(events) == 1 and not (update or consume_signal or publish or wake)
        self.done = False
        self.control: str | None = None
        self.error: BaseException | None = None


class CreateRequest:
    """One new workflow (its row and first events) waiting for a backend's group commit:
    ``existing`` is the row found under its id instead, once ``done``."""

    __slots__ = ("done", "error", "events", "existing", "publish", "row", "workflow_id")

    def __init__(self, row: WorkflowRow, events: list[NewEvent],
                 publish: list[tuple[str, str, Any]] | None = None) -> None:
        self.row, self.events, self.workflow_id = row, events, row.workflow_id
        self.publish = publish
        self.done = False
        self.existing: WorkflowRow | None = None
        self.error: BaseException | None = None


#: What a pending pause turns an update that gives the workflow up into.
_PAUSED_AT_REST = {"status": "PAUSED", "owner": None, "wake_at": None, "control": None,
                   "waiting": "resume", "wait_signal": None}


def update_under_control(update: dict[str, Any] | None, owner: str,
                         control: str | None) -> dict[str, Any] | None:
    """The row update an append applies, given the control pending on the workflow.

    An update that gives the workflow up without ending it (a suspension) becomes a pause
    at rest when a pause is pending, and is dropped when a cancel is pending: the owner
    keeps it and unwinds into the cancellation. Every backend applies this one rule.
    """
    releases = update is not None and update.get("owner", owner) is None and (
        update.get("status") not in TERMINAL_STATUSES
    )
    if control == "cancel" and releases:
        return None
    if control == "pause" and releases:
        return dict(_PAUSED_AT_REST)
    return update


def retryable(status: str, owner: str | None, error: str | None) -> bool:
    """May ``engine.retry`` start a new run: the workflow ended as FAILURE, CANCELLED or
    DIVERGED, or it is set aside (unfinished, unowned, with an error)."""
    if status in ("FAILURE", "CANCELLED", "DIVERGED"):
        return True
    return status not in TERMINAL_STATUSES and owner is None and error is not None
