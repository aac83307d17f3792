"""Queues: flow control for started workflows, declared at import time like workflows.

A workflow started with ``queue=`` waits as ``ENQUEUED`` until a worker that declares
the queue may dequeue it under the queue's limits. The limits are enforced by the store
in the transaction that dequeues (see :meth:`durable.store.Store.claim_queued`), so that
``concurrency`` and ``rate_limit`` hold across every process on the database.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durable.errors import InvalidArgument
from durable.runtime.checks import check_text
from durable.runtime.registry import Workflow
from durable.runtime.rows import new_row
from durable.store import QueueLimits, WorkflowRow

QUEUES: dict[str, Queue] = {}


class Queue:
    """A named queue of workflows with global and per-worker limits.

    Args:
        name: the queue's name, given to ``engine.start(..., queue=name)``.
        concurrency: at most this many of its workflows between dequeue and end, across
            every process on the database (None: no limit). A workflow that sleeps or
            waits for a signal after it was dequeued still holds its slot.
        worker_concurrency: at most this many of its workflows running in one engine.
        rate_limit: ``(count, per_seconds)``: at most ``count`` dequeues in any window
            of ``per_seconds`` (sliding), across every process.
        priority: honour ``priority=`` of starts (lower runs first); False: FIFO only.

    Example:
        >>> emails = durable.Queue("emails", concurrency=4, rate_limit=(50, 60))
        >>> engine.start(send_email, "a@example.com", queue=emails)
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float | timedelta] | None = None,
        priority: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"Queue(name={name!r}): a queue needs a non-empty name")
        for label, value in (("concurrency", concurrency),
                             ("worker_concurrency", worker_concurrency)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidArgument(
                    f"Queue({name!r}, {label}={value!r}): give an int >= 1, or None for no limit"
                )
        rate: tuple[int, float] | None = None
        if rate_limit is not None:
            try:
                count, per = rate_limit
                per_s = per.total_seconds() if isinstance(per, timedelta) else float(per)
            except (TypeError, ValueError):
                per_s, count = -1.0, 0
            if not isinstance(count, int) or count < 1 or per_s <= 0:
                raise InvalidArgument(
                    f"Queue({name!r}, rate_limit={rate_limit!r}): give (count, per_seconds) "
                    "with count >= 1 and per_seconds > 0, e.g. rate_limit=(50, 60)"
                )
            rate = (count, per_s)
        self.name = name
        self.concurrency = concurrency
        self.worker_concurrency = worker_concurrency
        self.rate_limit = rate
        self.priority = bool(priority)
        existing = QUEUES.get(name)
        if existing is not None and existing.limits() != self.limits():
            raise InvalidArgument(
                f"queue {name!r} is already declared as {existing!r}; declare each queue "
                "once, in a module that every worker and client imports"
            )
        QUEUES[name] = self

    def limits(self) -> QueueLimits:
        """The queue as the store enforces it."""
        count, per = self.rate_limit or (None, None)
        return QueueLimits(self.name, self.concurrency, self.worker_concurrency, count, per,
                           self.priority)

    def __repr__(self) -> str:
        return (f"Queue({self.name!r}, concurrency={self.concurrency}, "
                f"worker_concurrency={self.worker_concurrency}, rate_limit={self.rate_limit})")


def queue_name(queue: Queue | str) -> str:
    """The name of a queue given as a :class:`Queue` or its name."""
    if isinstance(queue, Queue):
        return queue.name
    if isinstance(queue, str) and queue:
        return check_text(queue, "queue=")
    raise InvalidArgument(f"queue={queue!r}: give a durable.Queue or the name of one")


def served_queues() -> list[QueueLimits]:
    """Every queue declared in this process: the queues its workers serve."""
    return [q.limits() for q in QUEUES.values()]


def queued_row(workflow: Workflow, workflow_id: str, args: tuple[Any, ...],
               kwargs: dict[str, Any], now: float, *, queue: Queue | str | None,
               priority: int | None, dedup_id: str | None, begin: float | None,
               parent_id: str | None = None, deadline: float | None = None) -> WorkflowRow:
    """The row of a start that waits: in a queue, or until ``begin`` (``ENQUEUED``)."""
    name = None if queue is None else queue_name(queue)
    if name is None and (priority is not None or dedup_id is not None):
        raise InvalidArgument(
            f"start of {workflow.name} ({workflow_id!r}): priority= and dedup_id= order and "
            "deduplicate a queue; give queue= too"
        )
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise InvalidArgument(f"start of {workflow_id!r}: priority={priority!r} must be an int "
                              "(lower runs first)")
    declared = QUEUES.get(name or "")
    if priority is not None and declared is not None and not declared.priority:
        raise InvalidArgument(
            f"start of {workflow_id!r}: queue {name!r} was declared with priority=False; "
            "declare it with priority=True to order its workflows by priority"
        )
    if dedup_id is not None and (not isinstance(dedup_id, str) or not dedup_id):
        raise InvalidArgument(f"start of {workflow_id!r}: dedup_id must be a non-empty string")
    if dedup_id is not None:
        check_text(dedup_id, f"start of {workflow_id!r}, dedup_id=")
    row = new_row(workflow, workflow_id, args, kwargs, now, parent_id=parent_id,
                  deadline=deadline)
    if begin is not None and workflow.timeout is not None and parent_id is None:
        row.deadline = begin + workflow.timeout  # its timeout counts from its start time
    row.status, row.queue, row.priority, row.dedup_id = "ENQUEUED", name, priority or 0, dedup_id
    row.start_at = begin
    # Unqueued and deferred: the ordinary claim takes it at its time. Queued: only a
    # worker that serves the queue dequeues it (wake_at stays empty until then).
    row.wake_at = (begin if begin is not None else now) if name is None else None
    return row
