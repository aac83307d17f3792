"""The engine: starts workflows, runs them on worker threads, and answers about them."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.engine import fork as forking
from durable.engine.handle import WorkflowHandle
from durable.engine.threads import DaemonPool
from durable.engine.worker import Executor, owner_id
from durable.errors import (
    EngineClosed,
    InvalidArgument,
    NonDeterminismError,
    SerializationError,
    WaitTimeout,
    WorkflowConflict,
    WorkflowFinished,
    WorkflowNotFound,
)
from durable.runtime import run as running
from durable.runtime.host import register_host, unregister_host
from durable.runtime.registry import Workflow, find_workflow
from durable.runtime.rows import new_row, outcome, started_event
from durable.status import Status
from durable.store import Store, WorkflowRow, open_store

if TYPE_CHECKING:
    from durable.events import Event, WorkflowInfo
    from durable.replay import CallSite
    from durable.runtime.context import WorkflowContext
    from durable.runtime.registry import Step


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
            without making progress before it is failed.
        poll_interval: seconds between the dispatcher's looks for runnable work when
            nothing wakes it sooner; default: 0.05 on SQLite, 1.0 on PostgreSQL (whose
            LISTEN/NOTIFY wakes it at once; the poll is only a safety net).

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
        max_recoveries: int = 5,
        poll_interval: float | None = None,
    ) -> None:
        if not isinstance(workers, int) or workers < 0:
            raise InvalidArgument(f"Engine(workers={workers!r}): workers must be an int >= 0")
        if lease <= 0:
            raise InvalidArgument(f"Engine(lease={lease!r}): the lease must be > 0 seconds")
        self.path = os.fspath(db)
        self.store: Store = open_store(self.path, synchronous, preallocate=workers > 0)
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
        self.store.subscribe(self._changed_elsewhere)

    # -- life cycle -----------------------------------------------------------

    def __enter__(self) -> Engine:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> Engine:
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

    def start(
        self, wf: Workflow | str, *args: Any, workflow_id: str | None = None, **kwargs: Any
    ) -> WorkflowHandle:
        """Start a workflow and return its handle at once.

        Starting an id that exists returns the existing workflow (idempotent start).

        Raises:
            WorkflowConflict: the id exists and runs another workflow.
            SerializationError: the arguments cannot be recorded.
        """
        self._check_open()
        workflow = _resolve(wf)
        workflow_id = workflow_id or str(uuid.uuid4())
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
        elif claimed:
            self._executor.run_reserved(row)
        else:
            self._executor.wake()
        return WorkflowHandle(self, workflow_id)

    def run(self, wf: Workflow | str, *args: Any, workflow_id: str | None = None,
            **kwargs: Any) -> Any:
        """Start a workflow and wait for its result."""
        return self.start(wf, *args, workflow_id=workflow_id, **kwargs).result()

    def handle(self, workflow_id: str) -> WorkflowHandle:
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

    def send_signal(self, workflow_id: str, name: str, payload: Any = None) -> None:
        """Send a signal; delivered once, in send order, to ``wait_for_signal(name)``.

        Raises:
            WorkflowNotFound: no workflow has that id.
            WorkflowFinished: the workflow already ended.
        """
        row = self.row(workflow_id)
        if row.finished:
            raise WorkflowFinished(workflow_id, row.status, f"signal {name!r} to")
        try:
            encoding, data = ser.encode(payload)
        except ser.Unserializable as error:
            raise SerializationError(workflow_id, 0, f"signal {name!r}", error.type_name,
                                     error.reason) from error
        self.store.send_signal(workflow_id, name, encoding, data)
        self._executor.wake()

    def pause(self, workflow_id: str) -> None:
        """Pause a workflow at its next recorded call; no step runs until ``resume``."""
        self._unfinished(workflow_id, "pause")
        self.store.request_pause(workflow_id, self.time())
        self.notify()

    def resume(self, workflow_id: str) -> None:
        """Resume a paused workflow; it continues by replay."""
        self._unfinished(workflow_id, "resume")
        self.store.resume(workflow_id, self.time())
        self.wake()

    def cancel(self, workflow_id: str) -> None:
        """Cancel a workflow at its next recorded call (at once if it waits)."""
        self._unfinished(workflow_id, "cancel")
        self.store.request_cancel(workflow_id, self.time())
        self.wake()

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

    def replay(self, workflow_id: str) -> Any:
        """Run the current code against the recorded history without running any step.

        Returns the result the code returns on replay (None for a workflow that has
        not finished, once its recorded calls all match).

        Raises:
            NonDeterminismError: where the code and the history disagree.
            WorkflowFailed: the workflow failed, and replay reproduces the failure.
        """
        return running.replay(self, self.row(workflow_id))

    def fork(self, workflow_id: str, at: int, *, new_id: str | None = None) -> WorkflowHandle:
        """A new workflow that keeps calls 1..``at`` of the history and runs the rest anew."""
        return WorkflowHandle(self, forking.fork(self, self.row(workflow_id), at, new_id))

    # -- the runtime's host (durable.runtime.host.Host) -------------------------------

    def time(self) -> float:
        """The engine's clock (seconds since the epoch)."""
        return time.time()

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

    def before_new_call(self, ctx: WorkflowContext) -> None:
        self._executor.before_new_call(ctx)

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                 ctx: WorkflowContext, site: CallSite) -> Any:
        return self._executor.run_step(step, args, kwargs, key, ctx, site)


def _resolve(wf: Workflow | str) -> Workflow:
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
