"""Operating many workflows: queued, deferred and bulk starts, signal-with-start, retry
as a new run, and pruning finished workflows (DESIGN.md section 6)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.errors import (
    InvalidArgument,
    NonDeterminismError,
    NotRetryable,
    WorkflowConflict,
)
from durable.replay import Recorded, family
from durable.runtime.checks import check_text, encode_message
from durable.runtime.context import COMPENSATING
from durable.runtime.queues import Queue, queued_row
from durable.runtime.registry import Workflow, find_workflow
from durable.runtime.rows import new_row, started_event
from durable.store import TERMINAL_STATUSES, NewEvent, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine

log = logging.getLogger("durable")

#: Finished workflows deleted per prune transaction: workers wait at most that long.
PRUNE_BATCH = 500
_FAILED = ("step.failed", "child.failed")


def seconds_from_now(now: float, delay: float | timedelta | None,
                     start_at: datetime | float | None, workflow_id: str) -> float | None:
    """The time a deferred start may begin, or None to start at once."""
    if delay is not None and start_at is not None:
        raise InvalidArgument(f"start of {workflow_id!r}: give delay= or start_at=, not both")
    if delay is not None:
        value = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if not isinstance(value, int | float) or value < 0:
            raise InvalidArgument(f"start of {workflow_id!r}: delay={delay!r} must be "
                                  "seconds >= 0 or a timedelta")
        return now + float(value)
    if start_at is None:
        return None
    if isinstance(start_at, datetime):
        if start_at.tzinfo is None:
            raise InvalidArgument(f"start of {workflow_id!r}: start_at={start_at!r} is naive; "
                                  "give an aware datetime, e.g. datetime(..., tzinfo=UTC)")
        return start_at.timestamp()
    if isinstance(start_at, int | float):
        return float(start_at)
    raise InvalidArgument(f"start of {workflow_id!r}: start_at must be a datetime")


def start_waiting(engine: Engine, workflow: Workflow, workflow_id: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any], *, queue: Queue | str | None, priority: int | None,
                  dedup_id: str | None, begin: float | None,
                  signal: tuple[str, Any] | None) -> None:
    """A start with queue=, a delay, or a signal: one transaction, idempotent by id."""
    now = engine.time()
    if queue is None and begin is None and priority is None and dedup_id is None:
        row = new_row(workflow, workflow_id, args, kwargs, now)
    else:
        row = queued_row(workflow, workflow_id, args, kwargs, now, queue=queue,
                         priority=priority, dedup_id=dedup_id, begin=begin)
    sent = None
    if signal is not None:
        if not (isinstance(signal, tuple) and len(signal) == 2):
            raise InvalidArgument(f"start of {workflow_id!r}: signal={signal!r} must be a "
                                  "(name, payload) tuple")
        name = check_text(signal[0], f"start({workflow.name}, signal=(name, ...))")
        # JSON only, as send_signal without allow_pickle: another process reads it.
        sent = (name, *encode_message(signal[1], False, workflow_id, 0, f"signal {name!r}"))
    (existing,) = engine.store.create_workflows(
        [(row, [started_event(workflow, row, args, kwargs)])], signal=sent, now=now)
    if existing is not None and existing.name != workflow.name:
        raise WorkflowConflict(workflow_id, existing.name, workflow.name)
    engine.wake()


def start_many(engine: Engine, workflow: Workflow, arguments: list[Any],
               workflow_ids: list[str] | None, queue: Queue | str | None,
               priority: int | None, new_id: Any) -> list[str]:
    """Start one workflow per item of ``arguments`` in one transaction; their ids."""
    items = list(arguments)
    if workflow_ids is not None and len(workflow_ids) != len(items):
        raise InvalidArgument(
            f"start_many of {workflow.name}: {len(items)} argument sets but "
            f"{len(workflow_ids)} workflow_ids; give one id per start (or none)"
        )
    ids = list(workflow_ids) if workflow_ids is not None else [new_id() for _ in items]
    now = engine.time()
    rows = []
    for index, (workflow_id, item) in enumerate(zip(ids, items, strict=True)):
        args = item if isinstance(item, tuple) else (item,)
        # FIFO within one call: each start is a microsecond after the one before it.
        at = now + index * 1e-6
        if queue is None and priority is None:
            row = new_row(workflow, workflow_id, args, {}, at)
        else:
            row = queued_row(workflow, workflow_id, args, {}, at, queue=queue,
                             priority=priority, dedup_id=None, begin=None)
        rows.append((row, [started_event(workflow, row, args, {})]))
    found = engine.store.create_workflows(rows, now=now)
    engine.wake()
    for workflow_id, existing in zip(ids, found, strict=True):
        if existing is not None and existing.name != workflow.name:
            raise WorkflowConflict(workflow_id, existing.name, workflow.name)
    return ids


# -- retry --------------------------------------------------------------------------


def _diverged_at(row: WorkflowRow) -> int | None:
    if row.error is None:
        return None
    try:
        error = ser.decode_error(row.error)
    except Exception:
        return None
    return error.call if isinstance(error, NonDeterminismError) else None


def kept_calls(row: WorkflowRow, events: list[Recorded]) -> list[Recorded]:
    """The calls of ``row``'s current run that a retry keeps (see :func:`retry`)."""
    if any(e.kind == COMPENSATING for e in events):
        return []  # its compensations undid its effects: the retry starts from the top
    body = [e for e in events if e.call > 0 and family(e.kind) != "workflow"]
    last: dict[int, str] = {}
    for event in body:
        last[event.call] = event.kind
    cut = max(last, default=0) + 1
    diverged = _diverged_at(row)
    if diverged is not None:
        cut = diverged
    elif row.status == "FAILURE":
        for call in sorted(last, reverse=True):  # the failure: its trailing failed calls
            if last[call] not in _FAILED:
                break
            cut = call
    ended = {c for c, kind in last.items() if kind in ("child.completed", "child.failed")}
    return [
        e for e in body
        if e.call < cut and last[e.call] != "step.retry"  # unfinished attempts run anew
        and (family(e.kind) != "child" or e.call in ended)  # so do unfinished children
    ]


def retry(engine: Engine, workflow_id: str) -> None:
    """Run an ended workflow again under its id as a new run (see Engine.retry)."""
    row = engine.row(workflow_id)
    set_aside = not row.finished and row.owner is None and row.error is not None
    if row.status not in ("FAILURE", "CANCELLED", "DIVERGED") and not set_aside:
        raise NotRetryable(workflow_id, row.status)
    events = engine.store.events(workflow_id, row.run)
    started = next(e for e in events if e.kind == "workflow.started")
    kept = kept_calls(row, events)
    position = events[-1].position + 1
    run = row.run + 1
    copied = [
        NewEvent(position + i, e.call, e.kind, e.name, e.digest, e.args, e.encoding, e.payload)
        for i, e in enumerate([started, *kept])
    ]
    now = engine.time()
    workflow = find_workflow(row.name)
    deadline = now + workflow.timeout if workflow and workflow.timeout is not None else None
    if engine.store.new_run(workflow_id, row.run, copied, now, deadline) is None:
        current = engine.row(workflow_id)
        raise NotRetryable(workflow_id, f"{current.status} (run {current.run}) after a "
                           "concurrent change")
    log.info("workflow %r: retried as run %d, keeping %d recorded calls", workflow_id, run,
             len({e.call for e in kept}))
    engine.wake()


# -- prune --------------------------------------------------------------------------


def prune(engine: Engine, older_than: timedelta | float, status: str | None) -> int:
    """Delete finished workflows older than ``older_than``, in batches; how many."""
    age = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
    if not isinstance(age, int | float) or age < 0:
        raise InvalidArgument(f"prune(older_than={older_than!r}): give a timedelta >= 0")
    finished = sorted(TERMINAL_STATUSES)
    if status is not None and str(status) not in finished:
        raise InvalidArgument(
            f"prune(status={status!r}): only finished workflows are pruned; give one of "
            f"{', '.join(finished)}"
        )
    statuses = [str(status)] if status is not None else finished
    before = engine.time() - float(age)
    total = 0
    while True:
        deleted = engine.store.prune(before, statuses, PRUNE_BATCH)
        total += deleted
        if deleted < PRUNE_BATCH:
            return total


def when(timestamp: float | None) -> str:
    """A stored time as ISO text (UTC), for listings."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
