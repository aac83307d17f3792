"""Orchestration patterns for DAG tasks: fallbacks, recovery rules, circuit breakers.

They know nothing of :class:`~durable.dag.Task` (which uses them); the map-reduce task
constructors live with the Task in :mod:`durable.dag.model`.

Every decision these patterns make inside a run is part of a task's recorded outcome,
so a resumed run replays it instead of deciding again: a circuit breaker that was open
on the first run does not have to be open on the replay for the run to end the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from durable.errors import CircuitOpen, InvalidArgument

FallbackKind = Literal["default", "function", "skip", "fail"]


@dataclass(frozen=True)
class Fallback:
    """What a task does once its retries are spent.

    Build one with a constructor:

    - ``Fallback.default(value)``: the task succeeds with ``value``.
    - ``Fallback.function(fn)``: ``fn`` is called like the task's function (it also
      receives the error if it has a parameter named ``error``); its result is the task's.
    - ``Fallback.skip(reason)``: the task ends ``SKIPPED``.
    - ``Fallback.fail()``: the task fails (useful in ``recover=`` to exempt a type).

    Example:
        >>> Task("rates", fetch_rates, fallback=Fallback.default({"EUR": 1.0}),
        ...      recover={PermissionError: Fallback.fail()})
    """

    kind: FallbackKind
    value: Any = None
    func: Callable[..., Any] | None = None
    reason: str | None = None

    @classmethod
    def default(cls, value: Any) -> Fallback:
        """Succeed with ``value``."""
        return cls("default", value=value)

    @classmethod
    def function(cls, func: Callable[..., Any]) -> Fallback:
        """Call ``func`` instead (called like the task's own function)."""
        if not callable(func):
            raise InvalidArgument(f"Fallback.function() takes a callable, not {func!r}")
        return cls("function", func=func)

    @classmethod
    def skip(cls, reason: str | None = None) -> Fallback:
        """End the task as SKIPPED (its dependents are skipped too)."""
        return cls("skip", reason=reason)

    @classmethod
    def fail(cls) -> Fallback:
        """Let the task fail."""
        return cls("fail")

    def describe(self) -> str:
        if self.kind == "default":
            return f"default value {self.value!r}"
        if self.kind == "function":
            return f"fallback function {getattr(self.func, '__name__', self.func)!r}"
        return self.kind


def choose_fallback(
    error: BaseException,
    rules: Mapping[type[BaseException], Fallback],
    fallback: Fallback | None,
) -> Fallback | None:
    """The recovery rule for ``error``: the rule of its most specific type, else ``fallback``.

    "Most specific" is the first class of ``type(error).__mro__`` that has a rule, so a rule
    for ``FileNotFoundError`` wins over one for ``OSError``.
    """
    for kind in type(error).__mro__:
        rule = rules.get(kind)
        if rule is not None:
            return rule
    return fallback


class CircuitBreaker:
    """Fails calls fast after ``failure_threshold`` consecutive failures, for ``reset_timeout``.

    Tasks share a breaker by naming the same resource (``circuit_breaker="payments"``); the
    workflow creates a breaker with default settings for a name it does not know, or uses
    one given with ``Workflow(circuit_breakers=[...])``. A breaker object can also be shared
    by several workflows. After the cool-down one trial call is let through (half-open): its
    success closes the breaker, its failure opens it again.

    Args:
        name: the resource the breaker protects.
        failure_threshold: consecutive failed attempts that open it.
        reset_timeout: seconds it stays open.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"CircuitBreaker name must be a non-empty string, not {name!r}")
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise InvalidArgument(
                f"CircuitBreaker {name!r}: failure_threshold must be an int >= 1, "
                f"not {failure_threshold!r}"
            )
        if reset_timeout < 0:
            raise InvalidArgument(f"CircuitBreaker {name!r}: reset_timeout must be >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state}>"

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (cool-down over, trial allowed)."""
        with self._lock:
            return self._state()

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Let a call through, or raise :class:`CircuitOpen`."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half-open" and not self._trial:
                self._trial = True
                return
            assert self._opened_at is not None
            remaining = max(0.0, self._opened_at + self.reset_timeout - self._clock())
            raise CircuitOpen(self.name, self._failures, remaining)

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial = False

    def reset(self) -> None:
        """Close the breaker and forget its failures."""
        self.record_success()
