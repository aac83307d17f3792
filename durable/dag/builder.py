"""``WorkflowBuilder``: a fluent way to build a DAG :class:`~durable.dag.Workflow`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable.dag.model import Task, map_task, reduce_task
from durable.dag.patterns import CircuitBreaker, Fallback
from durable.dag.workflow import Workflow
from durable.errors import InvalidArgument


class WorkflowBuilder:
    """Build a workflow task by task; each ``with_*``/``depends_on`` call applies to the task
    added last.

    Example:
        >>> workflow = (WorkflowBuilder("etl")
        ...     .add_task("extract", extract)
        ...     .add_task("load", load).depends_on("extract").with_retries(3, delay=0.5)
        ...     .build())
    """

    def __init__(self, name: str | None = None, **workflow_options: Any) -> None:
        self._workflow = Workflow(name, **workflow_options)
        self._last: Task | None = None

    def add_task(self, task: str | Task, func: Callable[..., Any] | None = None,
                 **options: Any) -> WorkflowBuilder:
        """Add a task: a :class:`Task`, or a name, a function and Task options."""
        if isinstance(task, Task):
            if func is not None or options:
                raise InvalidArgument("add_task(Task(...)) takes no other arguments")
            made = task
        else:
            made = Task(name=task, func=func, **options)
        self._last = self._workflow.add_task(made)
        return self

    def map_task(self, name: str, func: Callable[..., Any], over: str,
                 **options: Any) -> WorkflowBuilder:
        """Add a task that calls ``func`` per item of task ``over``'s list."""
        self._last = self._workflow.add_task(map_task(name, func, over, **options))
        return self

    def reduce_task(self, name: str, func: Callable[..., Any], over: str,
                    **options: Any) -> WorkflowBuilder:
        """Add a task that calls ``func`` with task ``over``'s result."""
        self._last = self._workflow.add_task(reduce_task(name, func, over, **options))
        return self

    def _task(self, method: str) -> Task:
        if self._last is None:
            raise InvalidArgument(f"WorkflowBuilder.{method}() needs a task: call add_task first")
        return self._last

    def depends_on(self, *names: str) -> WorkflowBuilder:
        """The last task runs after these tasks (and receives their results by name)."""
        task = self._task("depends_on")
        task.dependencies = [*task.dependencies, *(n for n in names if n not in task.dependencies)]
        return self

    def with_retries(self, max_retries: int, delay: float = 1.0) -> WorkflowBuilder:
        """Retry the last task up to ``max_retries`` times, ``delay`` seconds apart."""
        task = self._task("with_retries")
        task.max_retries, task.retry_delay = max_retries, delay
        return self

    def with_timeout(self, seconds: float) -> WorkflowBuilder:
        """Time out each attempt of the last task after ``seconds``."""
        self._task("with_timeout").timeout = seconds
        return self

    def when(self, predicate: Callable[[dict[str, Any]], Any]) -> WorkflowBuilder:
        """Run the last task only if ``predicate({dependency: result})`` is true."""
        self._task("when").run_if = predicate
        return self

    def with_fallback(self, fallback: Fallback) -> WorkflowBuilder:
        """What the last task does once its retries are spent."""
        self._task("with_fallback").fallback = fallback
        return self

    def on_error(self, error: type[BaseException], fallback: Fallback) -> WorkflowBuilder:
        """A recovery rule of the last task for errors of type ``error``."""
        task = self._task("on_error")
        task.recover = {**task.recover, error: fallback}
        return self

    def with_priority(self, priority: int) -> WorkflowBuilder:
        """Among ready tasks, higher priority runs first."""
        self._task("with_priority").priority = priority
        return self

    def with_resources(self, **amounts: float) -> WorkflowBuilder:
        """What one attempt of the last task holds, e.g. ``with_resources(cpu=2)``."""
        self._task("with_resources").resources = dict(amounts)
        return self

    def with_circuit_breaker(self, breaker: str | CircuitBreaker) -> WorkflowBuilder:
        """Share a circuit breaker (by resource name) with other tasks."""
        self._task("with_circuit_breaker").circuit_breaker = breaker
        return self

    def with_parameters(self, **parameters: Any) -> WorkflowBuilder:
        """Constant keyword arguments of the last task's function."""
        task = self._task("with_parameters")
        task.parameters = {**task.parameters, **parameters}
        return self

    def build(self, validate: bool = True) -> Workflow:
        """The workflow, validated (``DagValidationError`` lists every problem)."""
        if validate:
            self._workflow.validate()
        return self._workflow
