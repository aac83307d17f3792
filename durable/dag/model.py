"""Task definitions: the pydantic model of a task, its states, and how it is called.

A :class:`Task` is validated when it is made (a non-callable ``func``, negative retries, a
zero timeout are :class:`~durable.errors.TaskDefinitionError` at once); problems that
involve other tasks (missing dependencies, cycles) are found by ``Workflow.validate()``.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

import durable
from durable.dag.patterns import CircuitBreaker, Fallback
from durable.errors import CircuitOpen, TaskDefinitionError

Trigger = Literal["all_success", "none_failed", "all_done"]


class TaskState(StrEnum):
    """The state of a DAG task in its workflow's latest run."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"

    @property
    def finished(self) -> bool:
        """True for the states a task does not leave within a run."""
        return self in (TaskState.SUCCESS, TaskState.FAILURE, TaskState.SKIPPED)


@dataclass
class TaskRun:
    """What happened to a task in its workflow's latest run (read it through the Task)."""

    state: TaskState = TaskState.PENDING
    result: Any = None
    error: BaseException | None = None
    skip_reason: str | None = None
    note: str | None = None
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    items: int | None = None
    replayed: bool = False

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max(0.0, self.finished - self.started)


@dataclass(frozen=True)
class CallShape:
    """Which arguments a task function takes (inspected once, when the task is made)."""

    known: bool
    keywords: frozenset[str] = frozenset()
    required: tuple[str, ...] = ()
    var_keyword: bool = False
    positional: str | None = None  # the parameter that receives a map item / input_from
    error: bool = False  # has a parameter named "error" (fallback functions)


_shapes: weakref.WeakKeyDictionary[Callable[..., Any], dict[bool, CallShape]] = (
    weakref.WeakKeyDictionary()
)


def call_shape(func: Callable[..., Any], takes_input: bool) -> CallShape:
    """The shape of ``func``'s parameters; ``takes_input`` reserves its first positional one."""
    try:
        cached = _shapes.get(func)
    except TypeError:  # not weakly referenceable (a builtin): inspect it every time
        return _inspect_shape(func, takes_input)
    if cached is None:
        cached = {}
        _shapes[func] = cached
    shape = cached.get(takes_input)
    if shape is None:
        shape = cached[takes_input] = _inspect_shape(func, takes_input)
    return shape


def _inspect_shape(func: Callable[..., Any], takes_input: bool) -> CallShape:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have no signature: pass only `parameters`
        return CallShape(known=False)
    keywords: set[str] = set()
    required: list[str] = []
    positional: str | None = None
    var_keyword = False
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if takes_input and positional is None and kind in (
            parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD, parameter.VAR_POSITIONAL
        ):
            positional = parameter.name
            continue
        if kind == parameter.VAR_KEYWORD:
            var_keyword = True
        elif kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            keywords.add(parameter.name)
            if parameter.default is parameter.empty:
                required.append(parameter.name)
        elif kind == parameter.POSITIONAL_ONLY and parameter.default is parameter.empty:
            required.append(parameter.name)
    return CallShape(True, frozenset(keywords), tuple(required), var_keyword, positional,
                     "error" in keywords or var_keyword)


_UNSET: Any = object()
#: ``item`` of :meth:`Task.arguments` for a call that is not a map item.
NO_ITEM: Any = _UNSET


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "task"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message} (got {item.get('input')!r})"
                        if "input" in item and where != "task" else f"{where}: {message}")
    return problems


class Task(BaseModel):
    """One task of a DAG :class:`~durable.dag.Workflow`.

    Args:
        name: unique within its workflow; the task's identity in the run's log.
        func: what the task does. A parameter named after a dependency receives that
            dependency's result; ``parameters`` supplies constants by name.
        dependencies: names of tasks that must finish first.
        max_retries: attempts after the first (``retry_delay`` seconds apart).
        retry_delay: seconds between attempts.
        retry: a full :class:`durable.RetryPolicy` instead of ``max_retries``/``retry_delay``.
        timeout: seconds one attempt may take (raises ``TaskTimeout``, then retries).
        parameters: constant keyword arguments for ``func``.
        run_if: a predicate on ``{dependency: result}``; false makes the task SKIPPED.
        fallback: what to do once retries are spent (see :class:`Fallback`).
        recover: fallbacks chosen by exception type (the most specific type wins).
        circuit_breaker: a resource name (or a :class:`CircuitBreaker`) shared with other
            tasks: after repeated failures they all fail fast for a cool-down.
        resources: what one attempt holds, e.g. ``{"cpu": 2}``; the run never exceeds the
            workflow's declared capacity.
        priority: higher runs first among ready tasks.
        trigger: when the task runs given its dependencies' ends: ``all_success``
            (default: else SKIPPED), ``none_failed`` (skipped ones pass ``None``) or
            ``all_done`` (always, e.g. a clean-up).
        map_over / input_from: see :func:`~durable.dag.map_task` and
            :func:`~durable.dag.reduce_task`.

    Example:
        >>> Task("load", lambda transform: db.insert(transform), dependencies=["transform"],
        ...      max_retries=3, timeout=30)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True,
                              extra="forbid")

    name: str
    func: Callable[..., Any]
    dependencies: list[str] = Field(default_factory=list)
    max_retries: int = Field(default=0, ge=0)
    retry_delay: float = Field(default=1.0, ge=0)
    retry: InstanceOf[durable.RetryPolicy] | None = None
    timeout: float | None = Field(default=None, gt=0)
    parameters: dict[str, Any] = Field(default_factory=dict)
    run_if: Callable[[dict[str, Any]], Any] | None = None
    fallback: InstanceOf[Fallback] | None = None
    recover: dict[type[BaseException], InstanceOf[Fallback]] = Field(default_factory=dict)
    circuit_breaker: str | InstanceOf[CircuitBreaker] | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    priority: int = 0
    trigger: Trigger = "all_success"
    map_over: str | None = None
    input_from: str | None = None
    description: str = ""

    _shape: CallShape = PrivateAttr(default_factory=lambda: CallShape(known=False))
    _run: TaskRun = PrivateAttr(default_factory=TaskRun)

    def __init__(self, name: Any = _UNSET, func: Any = _UNSET, /, **data: Any) -> None:
        for key, value in (("name", name), ("func", func)):
            if value is not _UNSET:
                if key in data:
                    raise TaskDefinitionError(f"task {data.get('name', name)!r}",
                                              [f"{key} given twice"])
                data[key] = value
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise TaskDefinitionError(f"task {data.get('name', '?')!r}",
                                      _problems(error)) from None

    def __setattr__(self, key: str, value: Any) -> None:
        try:
            super().__setattr__(key, value)
        except ValidationError as error:
            raise TaskDefinitionError(f"task {self.name!r}", _problems(error)) from None

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.state.value}>"

    # -- validation -------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _add_input_dependency(cls, data: Any) -> Any:
        if isinstance(data, dict):
            source = data.get("map_over") or data.get("input_from")
            dependencies = data.get("dependencies")
            if isinstance(source, str) and source:
                if dependencies is None:
                    data = {**data, "dependencies": [source]}
                elif isinstance(dependencies, list | tuple) and source not in dependencies:
                    data = {**data, "dependencies": [*dependencies, source]}
        return data

    @field_validator("name")
    @classmethod
    def _name_is_usable(cls, name: str) -> str:
        if not name or not name.strip():
            raise ValueError("a task name must be a non-empty string")
        if any(ord(ch) < 32 for ch in name):
            raise ValueError("a task name cannot hold control characters")
        return name

    @field_validator("dependencies")
    @classmethod
    def _dependencies_are_distinct(cls, dependencies: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in dependencies:
            if name in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name)
        return dependencies

    @field_validator("resources")
    @classmethod
    def _resources_are_positive(cls, resources: dict[str, float]) -> dict[str, float]:
        for name, amount in resources.items():
            if amount < 0:
                raise ValueError(f"resource {name!r} cannot be negative ({amount})")
        return resources

    @field_validator("recover")
    @classmethod
    def _recover_keys_are_exceptions(
        cls, rules: dict[type[BaseException], Fallback]
    ) -> dict[type[BaseException], Fallback]:
        for kind in rules:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ValueError(f"recovery rules are keyed by exception types, not {kind!r}")
        return rules

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if self.map_over and self.input_from:
            raise ValueError("give map_over or input_from, not both")
        if self.retry is not None and (self.max_retries or self.retry_delay != 1.0):
            raise ValueError("give max_retries/retry_delay or retry=RetryPolicy(...), not both")
        takes_input = bool(self.map_over or self.input_from)
        shape = call_shape(self.func, takes_input)
        if takes_input and shape.known and shape.positional is None:
            raise ValueError(
                f"func must take a positional parameter for the "
                f"{'items of' if self.map_over else 'result of'} "
                f"{self.map_over or self.input_from!r}"
            )
        self._shape = shape
        return self

    def problems(self) -> list[str]:
        """What ``Workflow.validate()`` reports about this task's call on its own."""
        found: list[str] = []
        # Read the private attribute directly: pydantic's __getattr__ costs microseconds,
        # which a 10,000-task validation pays 10,000 times.
        shape: CallShape = self.__pydantic_private__["_shape"]  # type: ignore[index]
        if not shape.known or (not shape.required and not self.parameters):
            return found
        deps = set(self.dependencies)
        for name in shape.required:
            if name not in deps and name not in self.parameters:
                found.append(
                    f"task {self.name!r}: parameter {name!r} of its function gets no value; "
                    "name a dependency after it, put it in parameters=, or give it a default"
                )
        for name in self.parameters:
            if name in deps:
                found.append(f"task {self.name!r}: {name!r} is both a dependency and a "
                             "parameter; rename one")
            elif name not in shape.keywords and not shape.var_keyword:
                found.append(f"task {self.name!r}: its function has no parameter {name!r} "
                             "(given in parameters=)")
        return found

    # -- calling ----------------------------------------------------------------

    def retry_policy(self) -> durable.RetryPolicy:
        """The engine retry policy of one attempt of this task."""
        base = self.retry or durable.RetryPolicy(
            max_attempts=self.max_retries + 1, backoff="fixed", initial_delay=self.retry_delay,
            max_delay=max(300.0, self.retry_delay),
        )
        # An open breaker fails fast: retrying it would only burn the attempts.
        return replace(base, non_retryable=(*base.non_retryable, CircuitOpen))

    def arguments(
        self, results: Mapping[str, Any], item: Any = _UNSET,
        func: Callable[..., Any] | None = None, error: BaseException | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of a call of ``func`` (default: the task's), from upstream results."""
        shape = self._shape if func is None else call_shape(func, self._takes_input())
        args: tuple[Any, ...] = ()
        if item is not _UNSET:
            args = (item,)
        elif self.input_from:
            args = (results.get(self.input_from),)
        if not shape.known:
            return args, dict(self.parameters)
        source = self.map_over or self.input_from
        if shape.var_keyword:
            kwargs = {d: results.get(d) for d in self.dependencies if d != source}
        else:
            kwargs = {d: results.get(d) for d in self.dependencies if d in shape.keywords}
        kwargs.update(self.parameters)
        if error is not None and shape.error and "error" not in kwargs:
            kwargs["error"] = error
        return args, kwargs

    def _takes_input(self) -> bool:
        return bool(self.map_over or self.input_from)

    # -- the latest run ---------------------------------------------------------

    @property
    def state(self) -> TaskState:
        """The task's state in its workflow's latest run."""
        return self._run.state

    @property
    def result(self) -> Any:
        """The task's result in the latest run (None unless SUCCESS)."""
        return self._run.result

    @property
    def error(self) -> BaseException | None:
        """The error that made the task fail in the latest run."""
        return self._run.error

    @property
    def skip_reason(self) -> str | None:
        """Why the task was SKIPPED in the latest run."""
        return self._run.skip_reason

    @property
    def attempts(self) -> int:
        """Attempts made in this process during the latest run (0 when replayed)."""
        return self._run.attempts

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the last one's end (None if replayed)."""
        return self._run.duration

    @property
    def run_info(self) -> TaskRun:
        """Everything recorded about the task in the latest run."""
        return self._run

    def reset(self) -> None:
        """Forget the latest run: back to PENDING."""
        self._run = TaskRun()


def map_task(name: str, func: Callable[..., Any], over: str, **options: Any) -> Task:
    """A task that calls ``func`` once per item of the list that task ``over`` returns.

    Each item is its own recorded step, run in parallel (within ``max_workers`` and the
    resource limits), retried, timed out and given its fallback on its own; a resumed run
    does not run finished items again. The task's result is the list of item results, in
    order (items whose fallback skipped them are left out). ``func`` receives the item as
    its first positional argument, and other dependencies' results by parameter name.

    Example:
        >>> map_task("clean", clean_row, over="extract")
    """
    return Task(name=name, func=func, map_over=over, **options)


def reduce_task(name: str, func: Callable[..., Any], over: str, **options: Any) -> Task:
    """A task that calls ``func`` with the result of task ``over`` as its first argument.

    With :func:`map_task` it completes a map-reduce: ``reduce_task("total", sum, over="clean")``.
    """
    return Task(name=name, func=func, input_from=over, **options)
