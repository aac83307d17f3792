"""Decorators, retry policies and the registry of workflow and step functions."""

from __future__ import annotations

import functools
import inspect
import random
import sys
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Generic, Literal, overload

from typing_extensions import ParamSpec, TypeVar

from durable.errors import DuplicateName, InvalidArgument

#: The parameters of a decorated function (``...`` when not known, as in ``Step`` bare).
P = ParamSpec("P", default=...)
#: What a call returns (``Any`` when not known). Covariant: a ``Step[P, CoroutineType]``
#: is a ``Step[P, Coroutine]``.
R = TypeVar("R", covariant=True, default=Any)
T = TypeVar("T")

Backoff = Literal["fixed", "linear", "exponential"]


def seconds(value: float | timedelta | None, what: str) -> float | None:
    """A duration in seconds, from a number or a timedelta."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{what} must be seconds or a timedelta, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how far apart, a failing step is tried again.

    Args:
        max_attempts: attempts in all, the first included (1 = no retry).
        backoff: ``fixed`` (always ``initial_delay``), ``linear`` (``initial_delay *
            attempt``) or ``exponential`` (``initial_delay * multiplier ** (attempt - 1)``).
        initial_delay: seconds before the second attempt.
        max_delay: no delay is longer than this.
        multiplier: growth factor of ``exponential``.
        jitter: fraction of the delay added or removed at random (0 to 1).
        retry_on: only these exception types are retried.
        non_retryable: these are never retried, even if they match ``retry_on``.

    Example:
        ``@durable.step(retry=durable.RetryPolicy(max_attempts=5, backoff="exponential"))``
    """

    max_attempts: int = 3
    backoff: Backoff = "exponential"
    initial_delay: float = 1.0
    max_delay: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidArgument(f"RetryPolicy.max_attempts must be >= 1, not {self.max_attempts}")
        if self.backoff not in ("fixed", "linear", "exponential"):
            raise InvalidArgument(
                f"RetryPolicy.backoff must be 'fixed', 'linear' or 'exponential', "
                f"not {self.backoff!r}"
            )
        for name in ("initial_delay", "max_delay", "multiplier"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"RetryPolicy.{name} must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise InvalidArgument(f"RetryPolicy.jitter must be between 0 and 1, not {self.jitter}")
        for name in ("retry_on", "non_retryable"):
            value = getattr(self, name)
            if isinstance(value, type):
                object.__setattr__(self, name, (value,))

    def delay(self, attempt: int, draw: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.backoff == "fixed":
            base = self.initial_delay
        elif self.backoff == "linear":
            base = self.initial_delay * attempt
        else:
            base = self.initial_delay * self.multiplier ** (attempt - 1)
        base = min(base, self.max_delay)
        if self.jitter:
            draw = random.random() if draw is None else draw
            base *= 1 + self.jitter * (2 * draw - 1)
        return max(0.0, min(base, self.max_delay))

    def retries(self, error: BaseException, attempt: int) -> bool:
        """True when failed attempt ``attempt`` with ``error`` is to be tried again."""
        return (
            attempt < self.max_attempts
            and isinstance(error, self.retry_on)
            and not isinstance(error, self.non_retryable)
        )


NO_RETRY = RetryPolicy(max_attempts=1)

WORKFLOWS: dict[str, Workflow[..., Any]] = {}
STEPS: dict[str, Step[..., Any]] = {}


def _default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _register(table: dict[str, Any], kind: str, name: str, entry: Any) -> None:
    existing = table.get(name)
    if existing is not None:
        old, new = existing.fn.__code__, entry.fn.__code__
        # The same definition imported twice (a module run as __main__ and imported) is fine.
        if (old.co_filename, old.co_firstlineno) != (new.co_filename, new.co_firstlineno):
            raise DuplicateName(kind, name)
    table[name] = entry


class Step(Generic[P, R]):
    """A function whose result is recorded: see :func:`step`.

    ``Step[P, R]`` has the parameters ``P`` and the return type ``R`` of the function it
    decorates, so a type checker checks a call's arguments and knows its result. For an
    ``async def`` step ``R`` is its coroutine: ``await`` the call in an async workflow.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None,
        retry: RetryPolicy | None,
        timeout: float | timedelta | None,
        isolation: str,
    ) -> None:
        if isolation not in ("thread", "process"):
            raise InvalidArgument(
                f"step {_default_name(fn)}: isolation must be 'thread' or 'process', "
                f"not {isolation!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgument(f"step {_default_name(fn)}: retry must be a durable.RetryPolicy")
        self.fn = fn
        self.name = name or _default_name(fn)
        self.retry = retry or NO_RETRY
        self.timeout = seconds(timeout, f"step {self.name} timeout")
        self.isolation = isolation
        self.is_async = inspect.iscoroutinefunction(fn)
        self.returns = _return_annotation(fn)
        functools.update_wrapper(self, fn)
        if name is None and fn.__module__ == "__main__":
            _warn_main("step", self.name, fn)
        _register(STEPS, "step", self.name, self)

    #: How a call is carried out (recorded in a workflow, plain outside one). Set by
    #: :mod:`durable.runtime.dispatch`, which sits above the modules that define steps.
    dispatch: ClassVar[Callable[[Step[..., Any], tuple[Any, ...], dict[str, Any]], Any]]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = Step.dispatch(self, args, kwargs)
        return result

    def __repr__(self) -> str:
        return f"<durable step {self.name}>"


class Workflow(Generic[P, R]):
    """A function run durably by an engine: see :func:`workflow`.

    ``Workflow[P, R]`` has the parameters ``P`` of the function it decorates and its
    result type ``R`` (for an ``async def`` workflow, what its coroutine returns: a
    workflow call returns the result, also in an async workflow).
    """

    def __init__(
        self, fn: Callable[P, Any], name: str | None, timeout: float | timedelta | None,
        max_recoveries: int | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or _default_name(fn)
        self.timeout = seconds(timeout, f"workflow {self.name} timeout")
        if max_recoveries is not None and (
                type(max_recoveries) is not int or max_recoveries < 0):
            raise InvalidArgument(f"workflow {self.name}: max_recoveries must be an int >= 0, "
                                  f"not {max_recoveries!r}")
        #: Recoveries without progress before the workflow fails (None: the engine's).
        self.max_recoveries = max_recoveries
        self.is_async = inspect.iscoroutinefunction(fn)
        self.returns = _return_annotation(fn)
        functools.update_wrapper(self, fn)
        if name is None and fn.__module__ == "__main__":
            _warn_main("workflow", self.name, fn)
        _register(WORKFLOWS, "workflow", self.name, self)

    #: How a call is carried out (a child in a workflow, a run on the open engine outside
    #: one). Set by :mod:`durable.runtime.dispatch`.
    dispatch: ClassVar[Callable[[Workflow[..., Any], tuple[Any, ...], dict[str, Any]], Any]]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = Workflow.dispatch(self, args, kwargs)
        return result

    def options(self, *, workflow_id: str | None = None) -> WorkflowOptions[P, R]:
        """This workflow with start options, for ``engine.start``/``engine.run``: the
        form whose arguments a type checker still checks.

        Example:
            >>> engine.start(checkout.options(workflow_id="order-A-17"), "A-17")
        """
        return WorkflowOptions(self, workflow_id)

    def __repr__(self) -> str:
        return f"<durable workflow {self.name}>"


class WorkflowOptions(Generic[P, R]):
    """A workflow with the options of one start (see :meth:`Workflow.options`)."""

    def __init__(self, workflow: Workflow[P, R], workflow_id: str | None) -> None:
        self.workflow, self.workflow_id = workflow, workflow_id

    def __repr__(self) -> str:
        return f"<durable workflow {self.workflow.name} options workflow_id={self.workflow_id!r}>"


class MainModuleName(UserWarning):
    """A workflow or step defined in a script run as ``__main__`` has a name
    (``__main__.f``) that a worker importing the script as a module will not find."""


_warned_main: list[bool] = []  # once per process: the advice covers every function


def _warn_main(kind: str, name: str, fn: Callable[..., Any]) -> None:
    if _warned_main:
        return
    _warned_main.append(True)
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script is None:  # an interactive session, a notebook, python -c
        where = (f"{kind} {fn.__qualname__} is defined interactively (module __main__), so "
                 f"it is recorded as {name!r}: no worker in another process can import it")
        stem = "myapp"
    else:
        stem = script.rsplit("/", 1)[-1].removesuffix(".py")
        where = (f"{kind} {fn.__qualname__} is defined in {script}, run as __main__, so it "
                 f"is recorded as {name!r}: a worker running `durable worker {script}` "
                 f"imports that file as module {stem!r} and knows it as "
                 f"{stem}.{fn.__qualname__}")
    warnings.warn(
        f"{where}, so it cannot recover the workflows this process starts. Give your "
        f"workflows and steps stable names, such as @durable.{kind}(name="
        f"\"{stem}.{fn.__qualname__}\"), or define them in a module that the script "
        "imports. (Said once per process.)",
        MainModuleName, stacklevel=4,
    )


def _return_annotation(fn: Callable[..., Any]) -> Any:
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:  # an annotation that cannot be evaluated: fall back to no annotation
        return None
    return hints.get("return")


class _WorkflowDecorator:
    """What ``@durable.workflow(...)`` returns: typed like the bare decorator."""

    def __init__(self, name: str | None, timeout: float | timedelta | None,
                 max_recoveries: int | None) -> None:
        self.name, self.timeout, self.max_recoveries = name, timeout, max_recoveries

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]], /) -> Workflow[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> Workflow[P, T]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Workflow[..., Any]:
        return Workflow(fn, self.name, self.timeout, self.max_recoveries)


class _StepDecorator:
    """What ``@durable.step(...)`` returns: typed like the bare decorator."""

    def __init__(self, name: str | None, retry: RetryPolicy | None,
                 timeout: float | timedelta | None, isolation: str) -> None:
        self.name, self.retry, self.timeout, self.isolation = name, retry, timeout, isolation

    def __call__(self, fn: Callable[P, T], /) -> Step[P, T]:
        return Step(fn, self.name, self.retry, self.timeout, self.isolation)


@overload
def workflow(fn: Callable[P, Coroutine[Any, Any, T]], /) -> Workflow[P, T]: ...
@overload
def workflow(fn: Callable[P, T], /) -> Workflow[P, T]: ...
@overload
def workflow(
    *, name: str | None = None, timeout: float | timedelta | None = None,
    max_recoveries: int | None = None,
) -> _WorkflowDecorator: ...
def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | timedelta | None = None,
    max_recoveries: int | None = None,
) -> Workflow[..., Any] | _WorkflowDecorator:
    """Make a function a durable workflow.

    Args:
        name: the name recorded in the log (default ``module.qualname``); a worker finds
            the function to recover by this name.
        timeout: the workflow fails with ``WorkflowTimeout`` once this much time has
            passed since it started (seconds or timedelta).
        max_recoveries: how often it may be recovered after losing its process without
            recording progress before it fails with ``RecoveryLimitExceeded`` (default:
            the engine's, 100).

    Example:
        >>> @durable.workflow
        ... def checkout(order_id: str) -> dict: ...
    """
    if fn is not None:
        return Workflow(fn, name, timeout, max_recoveries)
    return _WorkflowDecorator(name, timeout, max_recoveries)


@overload
def step(fn: Callable[P, T], /) -> Step[P, T]: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    isolation: str = "thread",
) -> _StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    isolation: str = "thread",
) -> Step[..., Any] | _StepDecorator:
    """Make a function a step: inside a workflow its result is recorded and never re-run.

    Args:
        name: the name recorded in the log (default ``module.qualname``).
        retry: a :class:`RetryPolicy` (default: no retry).
        timeout: seconds (or timedelta) after which the step raises ``StepTimeout``.
        isolation: ``"thread"`` (default) or ``"process"`` (a child process that a
            timeout really stops).
    """
    if fn is not None:
        return Step(fn, name, retry, timeout, isolation)
    return _StepDecorator(name, retry, timeout, isolation)


def find_workflow(name: str) -> Workflow[..., Any] | None:
    """The workflow registered under ``name`` in this process."""
    return WORKFLOWS.get(name)
