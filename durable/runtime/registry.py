"""Decorators, retry policies and the registry of workflow and step functions."""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal, TypeVar, overload

from durable.errors import DuplicateName, InvalidArgument

F = TypeVar("F", bound=Callable[..., Any])

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

WORKFLOWS: dict[str, Workflow] = {}
STEPS: dict[str, Step] = {}


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


class Step:
    """A function whose result is recorded: see :func:`step`."""

    def __init__(
        self,
        fn: Callable[..., Any],
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
        _register(STEPS, "step", self.name, self)

    #: How a call is carried out (recorded in a workflow, plain outside one). Set by
    #: :mod:`durable.runtime.dispatch`, which sits above the modules that define steps.
    dispatch: ClassVar[Callable[[Step, tuple[Any, ...], dict[str, Any]], Any]]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return Step.dispatch(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<durable step {self.name}>"


class Workflow:
    """A function run durably by an engine: see :func:`workflow`."""

    def __init__(
        self, fn: Callable[..., Any], name: str | None, timeout: float | timedelta | None,
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
        _register(WORKFLOWS, "workflow", self.name, self)

    #: How a call is carried out (a child in a workflow, a run on the open engine outside
    #: one). Set by :mod:`durable.runtime.dispatch`.
    dispatch: ClassVar[Callable[[Workflow, tuple[Any, ...], dict[str, Any]], Any]]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return Workflow.dispatch(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<durable workflow {self.name}>"


def _return_annotation(fn: Callable[..., Any]) -> Any:
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:  # an annotation that cannot be evaluated: fall back to no annotation
        return None
    return hints.get("return")


@overload
def workflow(fn: F, /) -> Workflow: ...
@overload
def workflow(
    *, name: str | None = None, timeout: float | timedelta | None = None,
    max_recoveries: int | None = None,
) -> Callable[[F], Workflow]: ...
def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | timedelta | None = None,
    max_recoveries: int | None = None,
) -> Workflow | Callable[[Callable[..., Any]], Workflow]:
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
    return lambda f: Workflow(f, name, timeout, max_recoveries)


@overload
def step(fn: F, /) -> Step: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    isolation: str = "thread",
) -> Callable[[F], Step]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    isolation: str = "thread",
) -> Step | Callable[[Callable[..., Any]], Step]:
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
    return lambda f: Step(f, name, retry, timeout, isolation)


def find_workflow(name: str) -> Workflow | None:
    """The workflow registered under ``name`` in this process."""
    return WORKFLOWS.get(name)
