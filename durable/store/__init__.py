"""Storage: the event log and its projections behind one small protocol.

The engine speaks only to :class:`Store`; :mod:`durable.store.sqlite` (a file) and
:mod:`durable.store.postgres` (a database URL) implement it with the same semantics;
:func:`durable.store.backend.open_store` picks one. Each method is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

from durable.replay import Recorded
from durable.store.reads import StoreReads
from durable.store.rows import (
    SCHEDULE_COLUMNS,
    TERMINAL_STATUSES,
    WORKFLOW_COLUMNS,
    Fenced,
    NewEvent,
    QueueLimits,
    ScheduleRow,
    StorageFailed,
    WorkflowRow,
)

__all__ = [
    "SCHEDULE_COLUMNS",
    "TERMINAL_STATUSES",
    "WORKFLOW_COLUMNS",
    "Fenced",
    "NewEvent",
    "QueueLimits",
    "ScheduleRow",
    "StorageFailed",
    "Store",
    "StoreReads",
    "WorkflowRow",
]

class Store(StoreReads, Protocol):
    """What the engine needs from storage (and the dashboard reads: :class:`StoreReads`).
    Every method is one transaction."""

    path: str
    #: Seconds between the dispatcher's polls when nothing wakes it sooner (the engine's
    #: default ``poll_interval``): short where polling is the only way to learn of work,
    #: long (a safety net) where the store calls its subscribers.
    poll_interval: float

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) when a workflow may have become runnable or
        changed in another process; a store that cannot tell never calls it."""

    def next_wake(self, now: float) -> float | None:
        """The earliest time after ``now`` at which a timer makes a workflow runnable;
        None if there is none or the store does not say (the dispatcher polls)."""

    def create_workflow(self, row: WorkflowRow, events: list[NewEvent],
                        publish: list[tuple[str, str, Any]] | None = None
                        ) -> WorkflowRow | None:
        """Insert a workflow and its first events, and its published events ``publish``
        ((key, encoding, payload), a fork's); the existing row if the id is taken."""

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[WorkflowRow]:
        """Take up to ``limit`` runnable workflows for ``owner``."""

    def events(self, workflow_id: str, run: int | None = None) -> list[Recorded]:
        """The events of a workflow (of one run, if given), in log order."""

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
        """Fenced append: raise :class:`Fenced` unless ``owner`` owns the workflow.

        ``now`` is the engine's clock (``time.time()`` if not given): the events' time,
        the row's ``updated``, and the ``wake_at`` of a workflow woken by this append.

        In the same transaction: applies ``update`` to the workflow row, marks the
        signal ``consume_signal`` consumed by the first event, stores ``publish``
        (key, encoding, payload) as the latest value of a published event, wakes the
        workflow ``wake`` if it waits, and after an update that arms a wait, wakes this
        one at once if what it waits for (``("signal", name)``, ``("child", id)``) is
        already there. A pending pause replaces an update that gives the workflow up;
        a pending cancel refuses it, and refuses a ``SUCCESS`` close outright (nothing
        is written: the caller cancels instead). Returns the pending control request or None.
        """

    def control(self, workflow_id: str) -> str | None:
        """The pending control request of a workflow (``pause``, ``cancel``,
        ``compensating``) or None: a cheap read, made before a new call runs."""

    def next_signal(self, workflow_id: str, name: str) -> tuple[int, str, Any] | None:
        """The oldest unconsumed signal ``name``: ``(id, encoding, payload)``."""

    def retry_set_aside(self, now: float | None = None) -> None:
        """Make every workflow set aside with an error (diverged, unknown), or left with a
        cancel pending by an engine without its code, runnable at ``now`` (the engine's
        clock; ``time.time()`` if not given)."""

    def renew(self, owner: str, lease_until: float, workflow_ids: Collection[str]) -> None:
        """Extend the leases ``owner`` holds on ``workflow_ids`` (the ones it is running:
        a workflow it stopped running must not stay leased)."""

    def retry_later(self, owner: str, workflow_id: str, retry_at: float, why: str) -> None:
        """Release a workflow whose run failed in the storage, runnable again from
        ``retry_at`` (not counted as a recovery); ``why`` is shown as what it waits for."""

    def release(self, owner: str, workflow_id: str | None = None,
                now: float | None = None) -> None:
        """Give up ownership (of one workflow, or of all) so others may claim (a released
        workflow with no wake time is runnable from ``now``, the engine's clock)."""

    def crashed(self, owner: str, workflow_id: str, retry_at: float) -> None:
        """End the lease of a workflow whose execution failed in the engine, as if its
        process had died: claimable from ``retry_at``, and the claim counts a recovery."""

    def workflow(self, workflow_id: str) -> WorkflowRow | None:
        """One workflow's row."""

    def workflows(
        self, status: str | None, name: str | None, limit: int, parent_id: str | None = None
    ) -> list[WorkflowRow]:
        """Workflows, newest first."""

    def request_pause(self, workflow_id: str, now: float) -> None:
        """Pause an unfinished workflow: at once if nobody runs it, else ask its owner to
        (``control = 'pause'``). Nothing if it is paused already or a cancel is pending."""

    def resume(self, workflow_id: str, now: float) -> None:
        """Withdraw a pending pause, and make a paused workflow runnable at ``now``; a
        set-aside one (``DIVERGED``, unknown code) too, its stored error cleared at once."""

    def request_cancel(self, workflow_id: str, now: float) -> None:
        """Ask an unfinished workflow to cancel (``control = 'cancel'``), waking it at
        ``now``; nothing if it is already compensating."""

    def terminate(self, workflow_id: str, now: float, status: str, encoding: str, payload: Any,
                  only_diverged: bool = False) -> WorkflowRow | None:
        """End an unfinished workflow at once, whoever owns it (its owner's next append is
        Fenced): append its closing event (``workflow.failed`` for ``FAILURE``,
        ``workflow.cancelled`` for ``CANCELLED``) with ``payload`` after the last one, set
        ``status`` and ``control = 'terminated'``, and wake its waiting parent. Returns its
        row as it was, or None when it had ended (or, with ``only_diverged``, is not
        ``DIVERGED``)."""

    def owners(self) -> list[str]:
        """Every owner that holds a workflow now."""

    def expire(self, owner: str) -> None:
        """End the leases of ``owner`` at once (its process is known to be gone)."""

    def signals(self, workflow_id: str) -> list[tuple[Any, ...]]:
        """Every signal sent to a workflow: ``(id, name, sent, consumed_position)``."""

    def send_signal(self, workflow_id: str, name: str, encoding: str, payload: Any,
                    now: float | None = None) -> None:
        """Queue a signal and wake the workflow if it waits for that name (at ``now``, the
        engine's clock; ``time.time()`` if not given)."""

    def published(self, workflow_id: str, key: str) -> tuple[str, Any] | None:
        """The latest published value of ``key``."""

    # -- queues, bulk starts, schedules, retry, prune (issue 13) ----------------------

    def create_workflows(
        self, items: list[tuple[WorkflowRow, list[NewEvent]]],
        signal: tuple[str, str, Any] | None = None, now: float | None = None,
    ) -> list[WorkflowRow | None]:
        """Insert many workflows in one transaction: for each, None if inserted, else the
        row that holds its id. Raises DuplicateWorkflow (nothing written) when a row's
        ``(queue, dedup_id)`` is taken by an unfinished workflow. ``signal`` (name,
        encoding, payload), for one item only, is queued for it in the same transaction
        (signal-with-start; sent at ``now``, the engine's clock); WorkflowFinished if that
        workflow already ended, WorkflowConflict if its id runs another workflow."""

    def claim_queued(
        self, owner: str, now: float, lease_until: float, limit: int, queues: list[QueueLimits]
    ) -> list[WorkflowRow]:
        """Dequeue up to ``limit`` ENQUEUED workflows of ``queues`` for ``owner``, within
        each queue's global concurrency (unfinished dequeued workflows), this owner's
        worker_concurrency and its sliding-window rate limit (dequeues in the last
        ``rate_per`` seconds); lower priority first, then oldest."""

    def new_run(
        self, workflow_id: str, from_run: int, events: list[NewEvent], now: float,
        deadline: float | None,
    ) -> WorkflowRow | None:
        """Retry: start run ``from_run + 1`` of an ended (FAILURE, CANCELLED, DIVERGED) or
        set-aside workflow with ``events`` (positions after the log's end) as its start,
        runnable at ``now``. None if the row is no longer in run ``from_run`` at rest."""

    def prune(self, finished_before: float, statuses: list[str], limit: int) -> int:
        """Delete up to ``limit`` finished workflows (of ``statuses``) last updated before
        ``finished_before`` with their events, signals and published values; never one
        that is an ancestor of an unfinished workflow. Returns how many it deleted."""

    def put_schedule(self, row: ScheduleRow) -> None:
        """Create or replace a schedule; one whose cron and timezone are unchanged keeps
        its stored ``next_at`` (re-declaring a schedule does not skip or repeat ticks)."""

    def delete_schedule(self, name: str) -> bool:
        """Remove a schedule; False if there was none."""

    def schedules(self) -> list[ScheduleRow]:
        """Every schedule, by name."""

    def fire_schedule(
        self, name: str, due: float, next_at: float,
        items: list[tuple[WorkflowRow, list[NewEvent]]], now: float | None = None,
    ) -> bool:
        """If the schedule's ``next_at`` is still ``due``: create ``items`` (ids that exist
        are left alone) and set ``next_at``; one transaction. False if another process
        fired it first (or it was removed)."""

    def close(self) -> None:
        """Close the connection."""
