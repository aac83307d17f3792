"""The engine: starts workflows, runs them on worker threads, and answers about them."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.errors import (
    EngineClosed,
    InvalidArgument,
    NoEngine,
    NonDeterminismError,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowFailed,
    WorkflowFinished,
    WorkflowNotFound,
)
from durable.registry import Workflow, find_workflow
from durable.status import Status
from durable.store import NewEvent, WorkflowRow
from durable.store.sqlite import SQLiteStore
from durable.threads import DaemonPool
from durable.worker import Executor, owner_id

if TYPE_CHECKING:
    from durable.context import WorkflowContext
    from durable.events import Event, WorkflowInfo
    from durable.registry import Step
    from durable.replay import CallSite

log = logging.getLogger("durable")

_open_engines: list[Engine] = []
_open_lock = threading.Lock()


def current_engine(name: str) -> Engine:
    """The engine most recently opened in this process (for direct workflow calls)."""
    with _open_lock:
        if not _open_engines:
            raise NoEngine(name)
        return _open_engines[-1]


class Engine:
    """Runs durable workflows on one SQLite database.

    Args:
        db: path of the SQLite file (created if missing).
        workers: how many workflows run at once in this process; 0 makes a client that
            only starts, signals and reads.
        synchronous: ``"full"`` (default) syncs every commit and survives power loss;
            ``"normal"`` survives any process crash and is several times faster.
        lease: seconds a claim on a workflow lasts without a heartbeat; another
            process takes over a workflow whose owner stopped renewing it.
        max_recoveries: how often a workflow may be recovered after losing its process
            without making progress before it is failed.

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
        poll_interval: float = 0.05,
    ) -> None:
        if not isinstance(workers, int) or workers < 0:
            raise InvalidArgument(f"Engine(workers={workers!r}): workers must be an int >= 0")
        if lease <= 0:
            raise InvalidArgument(f"Engine(lease={lease!r}): the lease must be > 0 seconds")
        self.path = os.fspath(db)
        self.store = SQLiteStore(self.path, synchronous, preallocate=workers > 0)
        self.owner = owner_id()
        self.workers = workers
        self.lease = float(lease)
        self.max_recoveries = max_recoveries
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._executor = Executor(self)
        self._steps: DaemonPool | None = None
        self._steps_lock = threading.Lock()
        self._opened = False
        self._closed = False

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
            with _open_lock:
                _open_engines.append(self)
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
        with _open_lock:
            if self in _open_engines:
                _open_engines.remove(self)
        self._notify()
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
        row = self._new_row(workflow, workflow_id, args, kwargs)
        started = self._started_event(workflow, row, args, kwargs)
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

    def _new_row(
        self,
        workflow: Workflow,
        workflow_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent_id: str | None = None,
        deadline: float | None = None,
    ) -> WorkflowRow:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise InvalidArgument(f"workflow_id must be a non-empty string, not {workflow_id!r}")
        encoding, payload = encode_input(workflow_id, workflow, args, kwargs)
        now = time.time()
        if workflow.timeout is not None and deadline is None:
            deadline = now + workflow.timeout
        return WorkflowRow(
            workflow_id=workflow_id, name=workflow.name, status="PENDING", run=1,
            input_encoding=encoding, input=payload, output_encoding=None, output=None,
            error=None, owner=None, lease_until=None, wake_at=now, wait_signal=None,
            waiting=None, control=None, recoveries=0, progress=0, parent_id=parent_id,
            deadline=deadline, created=now, updated=now,
        )

    @staticmethod
    def _started_event(
        workflow: Workflow, row: WorkflowRow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> NewEvent:
        return NewEvent(0, 0, "workflow.started", workflow.name, *ser.digest_text(args, kwargs),
                        row.input_encoding, row.input)

    def run(self, wf: Workflow | str, *args: Any, workflow_id: str | None = None,
            **kwargs: Any) -> Any:
        """Start a workflow and wait for its result."""
        return self.start(wf, *args, workflow_id=workflow_id, **kwargs).result()

    def handle(self, workflow_id: str) -> WorkflowHandle:
        """The handle of an existing workflow.

        Raises:
            WorkflowNotFound: no workflow has that id.
        """
        self._row(workflow_id)
        return WorkflowHandle(self, workflow_id)

    # -- reading --------------------------------------------------------------

    def _row(self, workflow_id: str) -> WorkflowRow:
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

        self._row(workflow_id)
        return [Event.from_recorded(workflow_id, e) for e in self.store.events(workflow_id)]

    def result(self, workflow_id: str, timeout: float | None = None) -> Any:
        """Wait for a workflow to end and return its result (see WorkflowHandle.result)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self._row(workflow_id)
            if row.finished:
                return self._outcome(row)
            if row.error and row.owner is None:
                error = ser.decode_error(row.error)
                if isinstance(error, NonDeterminismError):
                    raise error
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(workflow_id, "the result", timeout or 0.0)
            self._wait_for_change(min(self.poll_interval, remaining or self.poll_interval))

    def _outcome(self, row: WorkflowRow) -> Any:
        if row.status == Status.SUCCESS:
            workflow = find_workflow(row.name)
            annotation = workflow.returns if workflow else None
            if row.output_encoding == ser.PYDANTIC and annotation is None:
                return json.loads(row.output)
            return ser.decode(row.output_encoding or ser.JSON, row.output, annotation)
        if row.status == Status.CANCELLED:
            raise WorkflowCancelled(row.workflow_id)
        error = ser.decode_error(row.output) if row.output else None
        summary = ser.error_summary(row.output) if row.output else row.status
        raise WorkflowFailed(row.workflow_id, row.name, summary) from error

    def _wait_for_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- control --------------------------------------------------------------

    def send_signal(self, workflow_id: str, name: str, payload: Any = None) -> None:
        """Send a signal; delivered once, in send order, to ``wait_for_signal(name)``.

        Raises:
            WorkflowNotFound: no workflow has that id.
            WorkflowFinished: the workflow already ended.
        """
        row = self._row(workflow_id)
        if row.finished:
            raise WorkflowFinished(workflow_id, row.status, f"signal {name!r} to")
        try:
            encoding, data = ser.encode(payload)
        except ser.Unserializable as error:
            from durable.errors import SerializationError

            raise SerializationError(workflow_id, 0, f"signal {name!r}", error.type_name,
                                     error.reason) from error
        self.store.send_signal(workflow_id, name, encoding, data)
        self._executor.wake()

    def pause(self, workflow_id: str) -> None:
        """Pause a workflow at its next recorded call; no step runs until ``resume``."""
        from durable.control import pause

        pause(self, workflow_id)

    def resume(self, workflow_id: str) -> None:
        """Resume a paused workflow; it continues by replay."""
        from durable.control import resume

        resume(self, workflow_id)

    def cancel(self, workflow_id: str) -> None:
        """Cancel a workflow at its next recorded call (at once if it waits)."""
        from durable.control import cancel

        cancel(self, workflow_id)

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
                self._row(workflow_id)
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
        from durable.worker import replay

        return replay(self, self._row(workflow_id))

    def fork(self, workflow_id: str, at: int, *, new_id: str | None = None) -> WorkflowHandle:
        """A new workflow that keeps calls 1..``at`` of the history and runs the rest anew."""
        from durable.control import fork

        return fork(self, self._row(workflow_id), at, new_id)

    # -- used by the context ------------------------------------------------------

    def _step_pool(self) -> DaemonPool:
        """Threads for submitted steps and for sync steps of async workflows."""
        with self._steps_lock:
            if self._steps is None:
                self._steps = DaemonPool(max(32, 4 * self.workers), "durable-step")
            return self._steps

    def _before_new_call(self, ctx: WorkflowContext) -> None:
        self._executor.before_new_call(ctx)

    def _run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                  ctx: WorkflowContext, site: CallSite) -> Any:
        return self._executor.run_step(step, args, kwargs, key, ctx, site)

    def _warn_large(self, workflow_id: str, site: CallSite, size: int) -> None:
        log.warning(
            "workflow %r call #%d (%s) records %d bytes; large payloads slow every replay: "
            "store big data elsewhere and record a reference", workflow_id, site.call,
            site.name, size,
        )


class WorkflowHandle:
    """A reference to one workflow, from any process that opens its database."""

    def __init__(self, engine: Engine, workflow_id: str) -> None:
        self.engine = engine
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id!r}>"

    def status(self) -> Status:
        """The workflow's current state."""
        return Status(self.engine._row(self.workflow_id).status)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end; return its result.

        Raises:
            WorkflowFailed: it failed (the original error is ``__cause__``).
            WorkflowCancelled: it was cancelled.
            NonDeterminismError: its code diverged from its history (it stays resumable).
            WaitTimeout: ``timeout`` seconds passed first.
        """
        return self.engine.result(self.workflow_id, timeout)

    def signal(self, name: str, payload: Any = None) -> None:
        """Send it a signal (see Engine.send_signal)."""
        self.engine.send_signal(self.workflow_id, name, payload)

    def pause(self) -> None:
        self.engine.pause(self.workflow_id)

    def resume(self) -> None:
        self.engine.resume(self.workflow_id)

    def cancel(self) -> None:
        self.engine.cancel(self.workflow_id)

    def history(self) -> list[Event]:
        return self.engine.history(self.workflow_id)

    def get_event(self, key: str, default: Any = None, timeout: float | None = None) -> Any:
        return self.engine.get_event(self.workflow_id, key, default, timeout)


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


def encode_input(
    workflow_id: str, workflow: Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, Any]:
    """A workflow's arguments for the log: JSON when plain, cloudpickle otherwise."""
    try:
        return ser.encode([list(args), kwargs])
    except ser.Unserializable as error:
        from durable.errors import SerializationError

        raise SerializationError(
            workflow_id, 0, f"arguments of workflow {workflow.name}", error.type_name,
            error.reason,
        ) from error


def decode_input(row: WorkflowRow) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = ser.decode(row.input_encoding, row.input)
    return tuple(args), dict(kwargs)
