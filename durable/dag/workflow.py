"""The DAG workflow users build: tasks, validation, running, results and states."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import durable
from durable.dag import runner
from durable.dag.catalog import CALLBACKS, CATALOG, fingerprint
from durable.dag.graph import problems_and_order
from durable.dag.model import Task, TaskRun, TaskState
from durable.dag.patterns import CircuitBreaker
from durable.dag.report import RunReport, build_report, mermaid
from durable.errors import (
    DagRunFailed,
    DagValidationError,
    InvalidArgument,
    RecordedError,
    TaskDefinitionError,
    TaskResultUnavailable,
    WorkflowFailed,
    WorkflowNotFound,
)

Strategy = Literal["parallel", "sequential"]


def default_max_workers() -> int:
    """Tasks run at once when neither the workflow nor ``run()`` says (as ThreadPoolExecutor)."""
    return min(32, (os.cpu_count() or 1) + 4)


def default_db() -> str:
    """The database a workflow without an engine runs on: ``$DURABLE_DB`` or ``durable.db``."""
    return os.environ.get("DURABLE_DB") or "durable.db"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None = None
    max_workers: int | None = Field(default=None, ge=1)
    strategy: Strategy = "parallel"
    resources: dict[str, float] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _named(cls, name: str | None) -> str | None:
        if name is not None and not name.strip():
            raise ValueError("a workflow name must be a non-empty string")
        return name

    @field_validator("resources")
    @classmethod
    def _capacity(cls, resources: dict[str, float]) -> dict[str, float]:
        for resource, amount in resources.items():
            if amount < 0:
                raise ValueError(f"capacity of {resource!r} cannot be negative")
        return resources


class Workflow:
    """A DAG of tasks, run as one durable workflow whose steps are the tasks.

    Args:
        name: the DAG's name; a run started in one process resumes in another that defines
            a DAG of the same name (without one, a unique name is made up).
        engine: the :class:`durable.Engine` to run on; without one, each ``run()`` opens an
            engine on ``$DURABLE_DB`` (or ``durable.db``) and closes it afterwards.
        max_workers: tasks (and map items) run at once (default ``min(32, cpus + 4)``).
        strategy: ``"parallel"`` (default) or ``"sequential"`` (one task at a time).
        resources: capacity per resource, e.g. ``{"cpu": 4}``; tasks declare what they hold.
        circuit_breakers: breakers with non-default settings, shared by name.
        on_task_start, on_task_success, on_task_failure, on_task_retry, on_task_skip:
            callbacks (see :meth:`on_task_start` and the others).

    Example:
        >>> workflow = Workflow(name="etl")
        >>> workflow.add_task(Task(name="extract", func=lambda: [1, 2, 3]))
        >>> workflow.add_task(Task(name="load", func=lambda extract: sum(extract),
        ...                        dependencies=["extract"]))
        >>> workflow.run(run_id="etl-1")
        {'extract': [1, 2, 3], 'load': 6}
    """

    def __init__(
        self,
        name: str | None = None,
        engine: durable.Engine | None = None,
        *,
        max_workers: int | None = None,
        strategy: Strategy = "parallel",
        resources: Mapping[str, float] | None = None,
        circuit_breakers: Iterable[CircuitBreaker] = (),
        tasks: Iterable[Task] = (),
        on_task_start: Callable[[Task], Any] | None = None,
        on_task_success: Callable[[Task, Any], Any] | None = None,
        on_task_failure: Callable[[Task, BaseException], Any] | None = None,
        on_task_retry: Callable[[Task, BaseException, int], Any] | None = None,
        on_task_skip: Callable[[Task, str], Any] | None = None,
    ) -> None:
        try:
            settings = _Settings(name=name, max_workers=max_workers, strategy=strategy,
                                 resources=dict(resources or {}))
        except ValidationError as error:
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
            raise TaskDefinitionError(f"workflow {name!r}", problems) from None
        if engine is not None and not isinstance(engine, durable.Engine):
            raise TaskDefinitionError(f"workflow {name!r}",
                                      [f"engine must be a durable.Engine, not {engine!r}"])
        self.name: str = settings.name or f"workflow-{uuid.uuid4().hex[:8]}"
        self.engine = engine
        self.max_workers = settings.max_workers
        self.strategy: Strategy = settings.strategy
        self.resources: dict[str, float] = settings.resources
        self._tasks: dict[str, Task] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._callbacks: dict[str, list[Callable[..., Any]]] = {kind: [] for kind in CALLBACKS}
        self._lock = threading.Lock()
        self._results: dict[str, Any] = {}
        self.run_id: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        for breaker in circuit_breakers:
            self.add_circuit_breaker(breaker)
        for kind, callback in (("task_start", on_task_start), ("task_success", on_task_success),
                               ("task_failure", on_task_failure), ("task_retry", on_task_retry),
                               ("task_skip", on_task_skip)):
            if callback is not None:
                self._on(kind, callback)
        for task in tasks:
            self.add_task(task)
        CATALOG.publish(self)

    def __repr__(self) -> str:
        return f"<durable.dag.Workflow {self.name!r} ({len(self._tasks)} tasks)>"

    # -- definition -----------------------------------------------------------------

    def add_task(self, task: Task) -> Task:
        """Add a task; a second task of the same name is refused. Returns the task."""
        if not isinstance(task, Task):
            raise TaskDefinitionError(f"workflow {self.name!r}",
                                      [f"add_task() takes a durable.dag.Task, not {task!r}"])
        if task.name in self._tasks:
            raise TaskDefinitionError(
                f"workflow {self.name!r}",
                [f"a task named {task.name!r} was already added; task names must be unique"],
            )
        self._tasks[task.name] = task
        return task

    def add_tasks(self, *tasks: Task) -> None:
        """Add several tasks."""
        for task in tasks:
            self.add_task(task)

    def add_circuit_breaker(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Use ``breaker`` for the tasks whose ``circuit_breaker`` names it."""
        if not isinstance(breaker, CircuitBreaker):
            raise InvalidArgument(f"add_circuit_breaker() takes a CircuitBreaker, not {breaker!r}")
        self._breakers[breaker.name] = breaker
        return breaker

    def breaker_for(self, task: Task) -> CircuitBreaker | None:
        """The circuit breaker a task uses (made with default settings on first use)."""
        spec = task.circuit_breaker
        if spec is None or isinstance(spec, CircuitBreaker):
            return spec
        with self._lock:
            breaker = self._breakers.get(spec)
            if breaker is None:
                breaker = self._breakers[spec] = CircuitBreaker(spec)
            return breaker

    @property
    def tasks(self) -> Mapping[str, Task]:
        """The tasks by name, in the order they were added."""
        return MappingProxyType(self._tasks)

    def __getitem__(self, name: str) -> Task:
        return self._tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def fingerprint(self) -> str:
        """A digest of the task names (a recovered run looks for a DAG that has them)."""
        return fingerprint(self._tasks)

    def validate(self) -> list[str]:
        """Check the whole DAG before anything runs; return a topological order.

        Raises:
            DagValidationError: listing every problem at once: missing dependencies (with
                the task that wants them), cycles spelled out as ``a -> b -> c -> a``
                (arrows point to the dependent task), parameters that get no value,
                tasks that need more of a resource than the workflow has.
        """
        problems, order = problems_and_order(self._tasks, self.resources)
        if problems:
            raise DagValidationError(self.name, problems)
        return order

    # -- callbacks ---------------------------------------------------------------------

    def _on(self, kind: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(callback):
            raise InvalidArgument(f"on_{kind}() takes a callable, not {callback!r}")
        self._callbacks[kind].append(callback)
        return callback

    def on_task_start(self, callback: Callable[[Task], Any]) -> Callable[[Task], Any]:
        """Call ``callback(task)`` when a task's first attempt starts (usable as decorator)."""
        return self._on("task_start", callback)

    def on_task_success(self, callback: Callable[[Task, Any], Any]) -> Callable[[Task, Any], Any]:
        """Call ``callback(task, result)`` when a task succeeds."""
        return self._on("task_success", callback)

    def on_task_failure(
        self, callback: Callable[[Task, BaseException], Any]
    ) -> Callable[[Task, BaseException], Any]:
        """Call ``callback(task, error)`` when a task fails for good."""
        return self._on("task_failure", callback)

    def on_task_retry(
        self, callback: Callable[[Task, BaseException, int], Any]
    ) -> Callable[[Task, BaseException, int], Any]:
        """Call ``callback(task, error, attempt)`` when failed attempt ``attempt`` is retried."""
        return self._on("task_retry", callback)

    def on_task_skip(self, callback: Callable[[Task, str], Any]) -> Callable[[Task, str], Any]:
        """Call ``callback(task, reason)`` when a task is skipped."""
        return self._on("task_skip", callback)

    def callbacks(self, kind: str) -> tuple[Callable[..., Any], ...]:
        """The callbacks registered for ``kind`` (one of ``task_start``, ``task_success``,
        ``task_failure``, ``task_retry``, ``task_skip``), in registration order."""
        if kind not in self._callbacks:
            raise InvalidArgument(f"no callback kind {kind!r}; one of {', '.join(CALLBACKS)}")
        return tuple(self._callbacks[kind])

    # -- running ------------------------------------------------------------------------

    def run(self, run_id: str | None = None, max_workers: int | None = None) -> dict[str, Any]:
        """Validate, then run the DAG durably; return ``{task: result}`` of the tasks that
        succeeded.

        Running a ``run_id`` again resumes it: after a crash the run carries on where it
        stopped; after a failure a new attempt runs the failed and skipped tasks and keeps
        the results of those that succeeded; a run that succeeded returns its results.

        Args:
            run_id: the run's id (default: a new one). The first run of an id fixes its
                options (``max_workers``); a resumed run keeps them.
            max_workers: tasks run at once for a new run (default: the workflow's).

        Raises:
            DagValidationError: the DAG is invalid; nothing ran.
            DagRunFailed: tasks failed; it lists them and the skipped ones. Task states
                stay inspectable (``task.state``, ``workflow.report()``).
        """
        self.validate()
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise InvalidArgument(f"run_id must be a non-empty string, not {run_id!r}")
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise InvalidArgument(f"max_workers must be an int >= 1, not {max_workers!r}")
        run_id = run_id or f"{self.name}-{uuid.uuid4().hex[:12]}"
        workers = 1 if self.strategy == "sequential" else (
            max_workers or self.max_workers or default_max_workers())
        options = {"run_id": run_id, "max_workers": workers, "capacity": dict(self.resources),
                   "fingerprint": self.fingerprint()}
        CATALOG.publish(self)  # before an engine opens: it may recover this run at once
        CATALOG.book(self).forget()
        for task in self._tasks.values():
            task.reset()
        self.run_id, self._results = run_id, {}
        self.started_at, self.finished_at = time.time(), None
        engine = self.engine or durable.Engine(default_db())
        try:
            attempt_id, carried = _next_attempt(engine, self.name, run_id)
            CATALOG.bind(attempt_id, self)
            try:
                outcome = self._wait(engine, attempt_id, options, carried)
            finally:
                CATALOG.unbind(attempt_id)
        finally:
            self.finished_at = time.time()
            if self.engine is None:
                engine.close()
        return dict(outcome["results"])

    def _wait(self, engine: durable.Engine, attempt_id: str, options: dict[str, Any],
              carried: dict[str, Any]) -> dict[str, Any]:
        handle = engine.start(runner.run_dag, self.name, options, carried,
                              workflow_id=attempt_id)
        try:
            outcome: dict[str, Any] = handle.result()
        except WorkflowFailed as failed:
            if not isinstance(failed.__cause__, DagRunFailed):
                raise
            published = engine.get_event(attempt_id, runner.OUTCOME_EVENT) or {}
            self._apply(published)
            error = DagRunFailed(self.name, str(options["run_id"]),
                                 dict(published.get("failed", {})),
                                 list(published.get("skipped", {})))
            error.skip_reasons = dict(published.get("skipped", {}))  # type: ignore[attr-defined]
            first = next((t.error for t in self._tasks.values() if t.error is not None), None)
            raise error from first
        self._apply(outcome)
        return outcome

    def _apply(self, outcome: Mapping[str, Any]) -> None:
        """Set every task's final state from a run's recorded outcome."""
        results = outcome.get("results", {})
        skipped = outcome.get("skipped", {})
        failed = outcome.get("failed", {})
        for name, task in self._tasks.items():
            record = task.run_info
            if name in results:
                record.state, record.result = TaskState.SUCCESS, results[name]
            elif name in skipped:
                record.state, record.skip_reason = TaskState.SKIPPED, skipped[name]
            elif name in failed:
                record.state = TaskState.FAILURE
                if record.error is None:
                    kind, _, message = str(failed[name]).partition(": ")
                    record.error = RecordedError(kind, message, "")
        self._results = dict(results)

    # -- results --------------------------------------------------------------------------

    @property
    def results(self) -> dict[str, Any]:
        """``{task: result}`` of the latest run's successful tasks."""
        return dict(self._results)

    def get_task_result(self, name: str) -> Any:
        """The result of task ``name``: inside a task, from the running run; outside, from
        the latest run.

        Raises:
            TaskResultUnavailable: no such task, or it has no result (yet).
        """
        results = runner.current_results() if runner.current_dag() is self else None
        if results is None:
            results = self._results
        if name in results:
            return results[name]
        if name not in self._tasks:
            raise TaskResultUnavailable(self.name, name, "the workflow has no such task")
        state = self._tasks[name].state
        raise TaskResultUnavailable(self.name, name, f"its state is {state.value}")

    def task_runs(self) -> dict[str, TaskRun]:
        """What happened to each task in the latest run."""
        return {name: task.run_info for name, task in self._tasks.items()}

    def report(self) -> RunReport:
        """A status table of the latest run (``print()`` it): state, attempts, duration and
        start of each task, the critical path and the slowest tasks."""
        return build_report(self.name, self.run_id, self._tasks, self.started_at,
                            self.finished_at)

    def critical_path(self) -> list[str]:
        """The chain of dependent tasks that took longest in the latest run."""
        return list(self.report().critical_path)

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (edges point to the dependent task), tasks
        coloured by state."""
        return mermaid(self._tasks)


def _next_attempt(engine: durable.Engine, dag_name: str,
                  run_id: str) -> tuple[str, dict[str, Any]]:
    """The durable workflow id to run ``run_id`` under, and the results it keeps.

    Attempt 1 is ``run_id`` itself; once an attempt ends in failure, running the id again
    starts ``run_id/rerun-N``, which keeps the results of the tasks that succeeded.
    """
    attempts: list[tuple[str, durable.Status]] = []
    while True:
        attempt_id = run_id if not attempts else f"{run_id}/rerun-{len(attempts) + 1}"
        try:
            attempts.append((attempt_id, engine.handle(attempt_id).status()))
        except WorkflowNotFound:
            break
    if not attempts:
        return run_id, {}
    latest, status = attempts[-1]
    _check_owner(engine, latest, dag_name, run_id)
    if status not in (durable.Status.FAILURE, durable.Status.CANCELLED):
        return latest, {}
    carried: dict[str, Any] = {}
    for attempt_id, _status in reversed(attempts):
        outcome = engine.get_event(attempt_id, runner.OUTCOME_EVENT)
        if isinstance(outcome, dict):
            carried = dict(outcome.get("results", {}))
            break
    return f"{run_id}/rerun-{len(attempts) + 1}", carried


def _check_owner(engine: durable.Engine, attempt_id: str, dag_name: str, run_id: str) -> None:
    started = engine.history(attempt_id)[0]
    value = started.value
    owner = value[0][0] if isinstance(value, list) and value and value[0] else None
    if started.name != runner.DAG_WORKFLOW or owner != dag_name:
        raise InvalidArgument(
            f"run id {run_id!r} already belongs to {owner or started.name!r}, not to DAG "
            f"{dag_name!r}; choose another run_id"
        )
