"""The engine: starts workflows, runs them on worker threads, and answers about them."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, overload

from durable import serialization as ser
from durable.engine import fork as forking
from durable.engine import history
from durable.engine import operations as ops
from durable.engine.handle import WorkflowHandle
from durable.engine.scheduler import schedule_row
from durable.engine.threads import DaemonPool
from durable.engine.worker import Executor, owner_id
from durable.errors import (
    EngineClosed,
    InvalidArgument,
    NonDeterminismError,
    WaitTimeout,
    WorkflowConflict,
    WorkflowFinished,
    WorkflowNotFound,
    WorkflowTerminated,
)
from durable.runtime import run as running
from durable.runtime.checks import check_text, encode_message
from durable.runtime.context import log_fields
from durable.runtime.host import register_host, unregister_host
from durable.runtime.queues import Queue
from durable.runtime.registry import Workflow, WorkflowOptions, find_workflow
from durable.runtime.rows import new_row, outcome, started_event
from durable.runtime.schedules import check as check_schedule
from durable.status import Status
from durable.store import ScheduleRow, Store, WorkflowRow
from durable.store.backend import open_store

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from durable.events import Event, WorkflowInfo
    from durable.replay import CallSite
    from durable.runtime.context import WorkflowContext
    from durable.runtime.registry import Step


P = ParamSpec("P")
R = TypeVar("R")


log = logging.getLogger("durable")


class Engine:
    """Runs durable workflows on one SQLite database or one PostgreSQL database.

    Args:
        db: path of the SQLite file (created if missing), or a PostgreSQL URL
            (``postgresql://user@host:5432/db``, also ``postgres://``; add
            ``?schema=name`` for a schema other than ``durable``).
        workers: how many workflows run at once in this process; 0 makes a client that
            only starts, signals and reads.
        synchronous: ``"full"`` (default) syncs every commit and survives power loss;
            ``"normal"`` survives any process crash and is several times faster.
            On PostgreSQL, ``"normal"`` sets ``synchronous_commit = off``: a crash of the
            database server may lose the last commits, a crash of a worker loses none.
        lease: seconds a claim on a workflow lasts without a heartbeat; another
            process takes over a workflow whose owner stopped renewing it.
        max_recoveries: how often a workflow may be recovered after losing its process
            without making progress (no event recorded since the last recovery) before
            it is failed; default 100, as in DBOS. ``@durable.workflow(max_recoveries=N)``
            overrides it per workflow.
        poll_interval: seconds between the dispatcher's looks for runnable work when
            nothing wakes it sooner; default: 0.05 on SQLite, 1.0 on PostgreSQL (whose
            LISTEN/NOTIFY wakes it at once; the poll is only a safety net).
        read_only: open a SQLite file read-only (for inspection: list, show, history,
            replay): nothing is created, migrated or switched to WAL, and every write
            raises StorageError. Needs ``workers=0``.

    Example:
        >>> with durable.Engine("shop.db") as engine:
        ...     print(engine.run(checkout, "A-17"))
    """

    def __init__(
        self,
        db: str | os.PathLike[str] = "durable.db",
        *,
        workers: int = 8,
        synchronous: str = "full",
        lease: float = 30.0,
        max_recoveries: int = 100,
        poll_interval: float | None = None,
        read_only: bool = False,
    ) -> None:
        if not isinstance(workers, int) or workers < 0:
            raise InvalidArgument(f"Engine(workers={workers!r}): workers must be an int >= 0")
        if read_only and workers:
            raise InvalidArgument(
                f"Engine(workers={workers}, read_only=True): a read-only engine cannot run "
                "workflows; pass workers=0")
        if type(max_recoveries) is not int or max_recoveries < 0:
            raise InvalidArgument(f"Engine(max_recoveries={max_recoveries!r}): it must be an "
                                  "int >= 0")
        if lease <= 0:
            raise InvalidArgument(f"Engine(lease={lease!r}): the lease must be > 0 seconds")
        self.path = os.fspath(db)
        self.store: Store = open_store(self.path, synchronous, preallocate=workers > 0,
                                       read_only=read_only)
        self.path = self.store.path  # a URL without its password
        self.owner = owner_id()
        self.workers = workers
        self.lease = float(lease)
        self.max_recoveries = max_recoveries
        self.poll_interval = self.store.poll_interval if poll_interval is None else poll_interval
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._executor = Executor(self)
        self._steps: DaemonPool | None = None
        self._steps_lock = threading.Lock()
        self._opened = False
        self._closed = False
        #: Bumped by every cancel, pause and terminate sent through this engine: its
        #: running workflows then read their pending control before their next call.
        self.control_epoch = 0
        self.store.subscribe(self._changed_elsewhere)

    # -- life cycle -----------------------------------------------------------

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> Self:
        """Recover interrupted workflows and start the worker threads (once)."""
        if self._closed:
            raise EngineClosed(self.path)
        if not self._opened:
            self._opened = True
            register_host(self)
            if self.workers:
                self._executor.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers; running workflows stop at their next call and stay resumable."""
        if self._closed:
            return
        self._closed = True
        self.stopping.set()
        self._executor.stop(timeout)
        if self._steps is not None:
            self._steps.shutdown()
        unregister_host(self)
        self.notify()
        self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed(self.path)
        if not self._opened and self.workers:
            self.open()

    # -- starting -------------------------------------------------------------

    # PEP 612 allows no keyword parameter between ``*args: P.args`` and ``**kwargs:
    # P.kwargs``, so ``workflow_id=`` cannot sit in the checked signature: the checked
    # forms are ``start(wf, *args)`` and ``start(wf.options(workflow_id=...), *args)``;
    # ``start(wf, *args, workflow_id=...)`` keeps working with its arguments unchecked.
    @overload
    def start(self, wf: Workflow[P, R] | WorkflowOptions[P, R], /, *args: P.args,
              **kwargs: P.kwargs) -> WorkflowHandle[R]: ...
    @overload
    def start(self, wf: Workflow[..., R], /, *args: Any, workflow_id: str | None,
              **kwargs: Any) -> WorkflowHandle[R]: ...
    # A start that waits (queue=, delay=, start_at=, signal=): arguments unchecked, as
    # with workflow_id= (each form names the keyword it needs, so that a wrong call of
    # the checked form above is still reported).
    @overload
    def start(self, wf: Workflow[..., R] | WorkflowOptions[..., R], /, *args: Any,
              queue: Queue | str, priority: int | None = None, dedup_id: str | None = None,
              delay: float | timedelta | None = None, start_at: datetime | None = None,
              signal: tuple[str, Any] | None = None, workflow_id: str | None = None,
              **kwargs: Any) -> WorkflowHandle[R]: ...
    @overload
    def start(self, wf: Workflow[..., R] | WorkflowOptions[..., R], /, *args: Any,
              delay: float | timedelta, workflow_id: str | None = None,
              signal: tuple[str, Any] | None = None, **kwargs: Any) -> WorkflowHandle[R]: ...
    @overload
    def start(self, wf: Workflow[..., R] | WorkflowOptions[..., R], /, *args: Any,
              start_at: datetime, workflow_id: str | None = None,
              signal: tuple[str, Any] | None = None, **kwargs: Any) -> WorkflowHandle[R]: ...
    @overload
    def start(self, wf: Workflow[..., R] | WorkflowOptions[..., R], /, *args: Any,
              signal: tuple[str, Any], workflow_id: str | None = None,
              **kwargs: Any) -> WorkflowHandle[R]: ...
    @overload
    def start(self, wf: str, /, *args: Any, workflow_id: str | None = None,
              **kwargs: Any) -> WorkflowHandle[Any]: ...
    def start(self, wf: Workflow[..., Any] | WorkflowOptions[..., Any] | str, /, *args: Any,
              **kwargs: Any) -> WorkflowHandle[Any]:
        """Start a workflow and return its handle at once.

        Starting an id that exists returns the existing workflow (idempotent start).
        Give the id as ``wf.options(workflow_id=...)`` (a type checker then checks the
        arguments) or as ``workflow_id=...``.

        Args:
            queue: enqueue it (status ``ENQUEUED``) on this :class:`durable.Queue` (or
                queue name); a worker that declares the queue runs it within its limits.
            priority: its place in the queue: lower numbers run first, FIFO within one.
            dedup_id: refuse a second start with this id while one in the queue with it
                has not finished.
            delay, start_at: start no earlier than ``delay`` (seconds or timedelta) from
                now, or than the aware datetime ``start_at``.
            signal: ``(name, payload)``: signal-with-start. Queue the signal for the
                workflow in the same transaction that starts it (or finds it started).
                The payload is JSON, as with ``send_signal`` (pydantic models and
                dataclasses arrive as dicts).

        Raises:
            WorkflowConflict: the id exists and runs another workflow.
            DuplicateWorkflow: ``dedup_id`` is held by an unfinished workflow of the queue.
            WorkflowFinished: with ``signal``, the workflow with that id already ended.
            SerializationError: the arguments cannot be recorded, or the signal's payload
                needs pickle.
        """
        workflow_id = kwargs.pop("workflow_id", None)
        if isinstance(wf, WorkflowOptions):
            workflow_id = workflow_id or wf.workflow_id
            wf = wf.workflow
        # The options of a start that waits (section 6): keywords the workflow cannot take.
        options = {key: kwargs.pop(key) for key in _START_OPTIONS if key in kwargs}
        return self._start(_resolve(wf), workflow_id, args, kwargs, **options)

    def _start(self, workflow: Workflow[..., Any], workflow_id: str | None,
               args: tuple[Any, ...], kwargs: dict[str, Any], *,
               queue: Queue | str | None = None, priority: int | None = None,
               dedup_id: str | None = None, delay: float | timedelta | None = None,
               start_at: datetime | None = None, signal: tuple[str, Any] | None = None,
               ) -> WorkflowHandle[Any]:
        self._check_open()
        if workflow_id is not None:
            check_text(workflow_id, f"start({workflow.name}, workflow_id=...)")
        workflow_id = workflow_id or str(uuid.uuid4())
        if not (queue is None and priority is None and dedup_id is None and delay is None
                and start_at is None and signal is None):
            begin = ops.seconds_from_now(self.time(), delay, start_at, workflow_id)
            ops.start_waiting(self, workflow, workflow_id, args, kwargs, queue=queue,
                              priority=priority, dedup_id=dedup_id, begin=begin, signal=signal)
            return WorkflowHandle(self, workflow_id)
        row = new_row(workflow, workflow_id, args, kwargs, self.time())
        started = started_event(workflow, row, args, kwargs)
        # With a worker free here, the new workflow is created already claimed by this
        # engine and handed to that worker: no claim transaction, no polling delay.
        claimed = self._executor.reserve()
        if claimed:
            row.owner, row.lease_until, row.status = self.owner, row.created + self.lease, "RUNNING"
        try:
            existing = self.store.create_workflow(row, [started])
        except BaseException:
            if claimed:
                self._executor.unreserve()
            raise
        if existing is not None:
            if claimed:
                self._executor.unreserve()
            if existing.name != workflow.name:
                raise WorkflowConflict(workflow_id, existing.name, workflow.name)
            return WorkflowHandle(self, workflow_id)
        if log.isEnabledFor(logging.INFO):
            log.info("workflow %r (%s) started", workflow_id, workflow.name,
                     extra=log_fields(row, 0, "started"))
        if claimed:
            self._executor.run_reserved(row)
        else:
            self._executor.wake()
        return WorkflowHandle(self, workflow_id)

    def start_many(
        self, wf: Workflow[..., R] | str, arguments: list[Any],
        workflow_ids: list[str] | None = None, *, queue: Queue | str | None = None,
        priority: int | None = None,
    ) -> list[WorkflowHandle[R]]:
        """Start one workflow per item of ``arguments``, all in one transaction.

        An item that is a tuple is the positional arguments of its start; any other item
        is its one argument. An id in ``workflow_ids`` that exists returns its handle, as
        with :meth:`start`.

        Example:
            >>> handles = engine.start_many(resize, [("a.png", 64), ("b.png", 64)])
        """
        self._check_open()
        ids = ops.start_many(self, _resolve(wf), arguments, workflow_ids, queue, priority,
                             lambda: str(uuid.uuid4()))
        return [WorkflowHandle(self, workflow_id) for workflow_id in ids]

    def retry(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Run a FAILURE, CANCELLED or DIVERGED workflow again under its id, as a new run.

        The new run keeps every call its last run recorded before the failure (a step
        that failed, a child that had not ended, an attempt that was waiting to retry run
        anew); a run whose compensations ran starts from the top. The old run's events
        stay in the history. ``step_key()`` differs between runs.

        Raises:
            NotRetryable: the workflow is not FAILURE, CANCELLED or DIVERGED.
        """
        self._check_open()
        ops.retry(self, workflow_id)
        return WorkflowHandle(self, workflow_id)

    def prune(self, older_than: timedelta | float, status: Status | str | None = None) -> int:
        """Delete finished workflows that ended more than ``older_than`` ago, with their
        events, signals and published values; returns how many were deleted.

        Never deletes an unfinished workflow, an ancestor of one, or a child whose parent
        has not finished. Works in batches of 500, so workers wait little.
        """
        self._check_open()
        return ops.prune(self, older_than, None if status is None else Status(status).value)

    def schedule(self, name: str, cron: str, wf: Workflow[..., Any] | str, *args: Any,
                 timezone: str = "UTC", missed: str = "latest") -> None:
        """Store a cron schedule: ``wf(scheduled_at, *args)`` at each tick, on any worker.

        Replaces a schedule of that name (keeping its next tick if the cron is unchanged).
        """
        self._check_open()
        check_text(name, "engine.schedule(name=...)")
        check_schedule(cron, timezone, missed, f"engine.schedule({name!r})")
        workflow = _resolve(wf)
        self.store.put_schedule(schedule_row(name, cron, timezone, missed, workflow.name,
                                             args, self.time(), declared=False))
        self._executor.scheduler.changed()
        self.wake()

    def unschedule(self, name: str) -> bool:
        """Remove a schedule; False if there was none. Ticks already started go on."""
        self._check_open()
        removed = self.store.delete_schedule(name)
        self._executor.scheduler.changed()
        return removed

    def schedules(self) -> list[ScheduleRow]:
        """Every stored schedule, with its next due time (``next_at``)."""
        self._check_open()
        return self.store.schedules()

    @overload
    def run(self, wf: Workflow[P, R] | WorkflowOptions[P, R], /, *args: P.args,
            **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, wf: Workflow[..., R], /, *args: Any, workflow_id: str | None,
            **kwargs: Any) -> R: ...
    @overload
    def run(self, wf: str, /, *args: Any, workflow_id: str | None = None,
            **kwargs: Any) -> Any: ...
    def run(self, wf: Workflow[..., Any] | WorkflowOptions[..., Any] | str, /, *args: Any,
            **kwargs: Any) -> Any:
        """Start a workflow and wait for its result (``start`` takes the same arguments)."""
        return self.start(wf, *args, **kwargs).result()

    def run_workflow(self, wf: Workflow[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
        """A workflow called directly: start it under a new id and wait for its result."""
        return self._start(wf, None, args, kwargs).result()

    def handle(self, workflow_id: str) -> WorkflowHandle[Any]:
        """The handle of an existing workflow.

        Raises:
            WorkflowNotFound: no workflow has that id.
        """
        self.row(workflow_id)
        return WorkflowHandle(self, workflow_id)

    # -- reading --------------------------------------------------------------

    def row(self, workflow_id: str) -> WorkflowRow:
        """One workflow's row.

        Raises:
            WorkflowNotFound: no workflow has that id.
        """
        row = self.store.workflow(workflow_id)
        if row is None:
            raise WorkflowNotFound(workflow_id)
        return row

    def list_workflows(
        self, status: Status | str | None = None, name: str | None = None, limit: int = 100
    ) -> list[WorkflowInfo]:
        """Workflows, newest first, filtered by status and workflow name."""
        from durable.events import WorkflowInfo

        status_text = Status(status).value if status is not None else None
        rows = self.store.workflows(status_text, name, limit)
        return [WorkflowInfo.from_row(row) for row in rows]

    def history(self, workflow_id: str) -> list[Event]:
        """Every event of a workflow's log, in order (all runs)."""
        from durable.events import Event

        self.row(workflow_id)
        return [Event.from_recorded(workflow_id, e) for e in self.store.events(workflow_id)]

    def result(self, workflow_id: str, timeout: float | None = None) -> Any:
        """Wait for a workflow to end and return its result (see WorkflowHandle.result)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.row(workflow_id)
            if row.finished:
                return outcome(row)
            if row.error and row.owner is None:
                error = ser.decode_error(row.error)
                if isinstance(error, NonDeterminismError):
                    raise error
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(workflow_id, "the result", timeout or 0.0)
            self._wait_for_change(min(self.poll_interval, remaining or self.poll_interval))

    def _wait_for_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def _changed_elsewhere(self) -> None:
        """Another process made a workflow runnable or changed one (a store notification)."""
        self._executor.wake()
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits here for a result or a published event."""
        with self._changed:
            self._changed.notify_all()

    # -- control --------------------------------------------------------------

    def send_signal(self, workflow_id: str, name: str, payload: Any = None, *,
                    allow_pickle: bool = False) -> None:
        """Send a signal; delivered once, in send order, to ``wait_for_signal(name)``.

        The payload is JSON: JSON data, or a pydantic model or dataclass (it arrives as
        a dict). ``allow_pickle=True`` lets any other value through cloudpickle; only for
        senders the workers trust, since unpickling runs code.

        Raises:
            WorkflowNotFound: no workflow has that id.
            WorkflowFinished: the workflow already ended.
            SerializationError: the payload needs pickle and ``allow_pickle`` is False.
            InvalidArgument: ``name`` is not a str.
        """
        check_text(name, f"send_signal({workflow_id!r}, name=...)")
        row = self.row(workflow_id)
        if row.finished:
            raise WorkflowFinished(workflow_id, row.status, f"signal {name!r} to")
        encoding, data = encode_message(payload, allow_pickle, workflow_id, 0,
                                        f"signal {name!r}")
        self.store.send_signal(workflow_id, name, encoding, data, now=self.time())
        self._executor.wake()

    def pause(self, workflow_id: str) -> None:
        """Pause a workflow at its next recorded call; no step runs until ``resume``."""
        self._unfinished(workflow_id, "pause")
        self.store.request_pause(workflow_id, self.time())
        self.control_epoch += 1
        self.notify()

    def resume(self, workflow_id: str) -> None:
        """Resume a paused workflow; it continues by replay."""
        self._unfinished(workflow_id, "resume")
        self.store.resume(workflow_id, self.time())
        self.wake()

    def cancel(self, workflow_id: str) -> None:
        """Cancel a workflow at its next recorded call (at once if it waits).

        A ``DIVERGED`` workflow, whose code cannot replay it to run its compensations,
        ends ``CANCELLED`` at once without them.
        """
        self._unfinished(workflow_id, "cancel")
        now = self.time()
        if self.store.terminate(workflow_id, now, Status.CANCELLED.value, ser.JSON, None,
                                only_diverged=True) is None:
            self.store.request_cancel(workflow_id, now)
        self.control_epoch += 1
        self.wake()
        self.notify()

    def terminate(self, workflow_id: str, reason: str = "terminated by request") -> None:
        """End an unfinished workflow at once, without replaying it or running any of its
        code (no compensations): its status becomes ``FAILURE`` with a
        :class:`~durable.errors.WorkflowTerminated` error. A step still running finishes
        but its result is not recorded (its owner is fenced off). Attached children are
        terminated too (Temporal's default parent-close policy); detached ones run on.

        Raises:
            WorkflowNotFound: no workflow has that id.
            WorkflowFinished: the workflow already ended.
        """
        if not isinstance(reason, str):
            raise InvalidArgument(f"terminate({workflow_id!r}): reason must be a str, "
                                  f"not {type(reason).__name__}")
        row = self._unfinished(workflow_id, "terminate")
        error = ser.encode_error(WorkflowTerminated(workflow_id, reason))
        if self.store.terminate(workflow_id, self.time(), Status.FAILURE.value, ser.ERROR,
                                error) is None:
            row = self.row(workflow_id)
            raise WorkflowFinished(workflow_id, row.status, "terminate")
        self.control_epoch += 1
        for child in self.store.workflows(None, None, 10_000, parent_id=row.workflow_id):
            if not child.finished:
                with contextlib.suppress(WorkflowFinished):
                    self.terminate(child.workflow_id, f"its parent {workflow_id!r} was "
                                   f"terminated ({reason})")
        self.wake()
        self.notify()

    def _unfinished(self, workflow_id: str, action: str) -> WorkflowRow:
        row = self.row(workflow_id)
        if row.finished:
            raise WorkflowFinished(workflow_id, row.status, action)
        return row

    def get_event(self, workflow_id: str, key: str, default: Any = None,
                  timeout: float | None = None) -> Any:
        """The latest value a workflow published with ``durable.set_event(key, ...)``.

        With ``timeout``, wait up to that many seconds for it to be published;
        ``default`` if it is not.
        """
        check_text(key, f"get_event({workflow_id!r}, key=...)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.store.published(workflow_id, key)
            if found is not None:
                return ser.decode(found[0], found[1])
            if deadline is None or time.monotonic() >= deadline:
                self.row(workflow_id)
                return default
            self._wait_for_change(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    # -- replay and fork --------------------------------------------------------

    def replay(self, workflow_id: str, workflow: Workflow[..., Any] | None = None, *,
               break_at: int | None = None) -> Any:
        """Run the current code against the recorded history without running any step.

        Returns the result the code returns on replay (None for a workflow that has
        not finished, once its recorded calls all match).

        Args:
            workflow: the function to replay (default: the one registered under the
                recorded name).
            break_at: stop in ``pdb`` in the workflow's code once call N has returned
                its recorded value.

        Raises:
            NonDeterminismError: where the code and the history disagree.
            WorkflowFailed: the workflow failed, and replay reproduces the failure.
        """
        row = self.row(workflow_id)
        if break_at is None:
            return running.replay(self, row, workflow)
        from durable.runtime.debug import breaking

        calls = max((e.call for e in self.store.events(workflow_id, row.run)), default=0)
        return running.replay(self, row, workflow, breaking(break_at, calls))

    def export(self, workflow_id: str) -> str:
        """The history of a workflow's current run as JSON text (see
        :mod:`durable.engine.history` for the versioned format), for
        ``durable.testing.replay`` and ``durable replay --from-file``."""
        return json.dumps(history.export(self, workflow_id), indent=1, ensure_ascii=False)

    def fork(self, workflow_id: str, at: int, *, new_id: str | None = None
             ) -> WorkflowHandle[Any]:
        """A new workflow that keeps calls 1..``at`` of the history and runs the rest anew."""
        return WorkflowHandle(self, forking.fork(self, self.row(workflow_id), at, new_id))

    # -- the runtime's host (durable.runtime.host.Host) -------------------------------

    def time(self) -> float:
        """The engine's clock (seconds since the epoch)."""
        return time.time()

    def idle(self) -> bool:
        """No workflow runs on this engine's workers now."""
        return self._executor.idle()

    def wake(self) -> None:
        """Wake the dispatcher: a workflow may have become runnable."""
        self._executor.wake()

    def submit_beside(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the step pool (submitted steps, sync steps of async workflows)."""
        with self._steps_lock:
            if self._steps is None:
                self._steps = DaemonPool(max(32, 4 * self.workers), "durable-step")
            pool = self._steps
        return pool.submit(fn)

    def renew_leases(self, lease_until: float) -> None:
        """Extend the leases of the workflows this engine runs now (the heartbeat does this
        every lease/3 seconds; a test engine does it before moving its clock)."""
        self._executor.renew(lease_until)

    def before_new_call(self, ctx: WorkflowContext) -> None:
        self._executor.before_new_call(ctx)

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                 ctx: WorkflowContext, site: CallSite) -> Any:
        return self._executor.run_step(step, args, kwargs, key, ctx, site)


_START_OPTIONS = ("queue", "priority", "dedup_id", "delay", "start_at", "signal")


def _resolve(wf: Workflow[..., Any] | str) -> Workflow[..., Any]:
    if isinstance(wf, Workflow):
        return wf
    if isinstance(wf, str):
        found = find_workflow(wf)
        if found is None:
            raise InvalidArgument(
                f"no workflow named {wf!r} is registered; import its module first"
            )
        return found
    raise InvalidArgument(
        f"{wf!r} is not a durable workflow; decorate it with @durable.workflow"
    )
