"""The DAGs defined in this process, and what the runner keeps about each between runs.

The runner needs a DAG's definition (its tasks, breakers and callbacks), not the
user-facing :class:`~durable.dag.Workflow` class: :class:`Dag` says what it needs, so the
runner never imports the module that imports it. :class:`RunBook` is the bookkeeping
that must outlive one execution of a run's workflow function (a retry that waits resumes
the run in a new execution): the steps made for the tasks, and attempt counts.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import durable
from durable.dag.model import Task, TaskState
from durable.dag.patterns import CircuitBreaker

log = logging.getLogger("durable.dag")

#: The kinds of callback a DAG has (``on_<kind>``), in the order a task meets them.
CALLBACKS = ("task_start", "task_success", "task_failure", "task_retry", "task_skip")


class Dag(Protocol):
    """What the runner needs from a DAG definition (:class:`durable.dag.Workflow` is one)."""

    name: str

    @property
    def tasks(self) -> Mapping[str, Task]: ...

    def fingerprint(self) -> str: ...

    def breaker_for(self, task: Task) -> CircuitBreaker | None: ...

    def callbacks(self, kind: str) -> Sequence[Callable[..., Any]]: ...


def fingerprint(names: Iterable[str]) -> str:
    """A digest of a DAG's task names: a recovered run waits for the DAG that has them."""
    return hashlib.blake2b("\n".join(sorted(names)).encode(), digest_size=8).hexdigest()


def notify(dag: Dag, kind: str, *args: Any) -> None:
    """Call ``dag``'s ``on_<kind>`` callbacks; one that raises is logged, not propagated
    (an observer must not change the run's outcome)."""
    for callback in dag.callbacks(kind):
        try:
            callback(*args)
        except Exception:
            log.exception("DAG %r: on_%s callback %r failed", dag.name, kind, callback)


class RunBook:
    """What the runner keeps about one DAG in this process: the step made for each task
    unit, and the attempts made in the current run attempt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[Hashable, durable.Step] = {}
        self._attempts: dict[tuple[str, Hashable], int] = {}
        self._current: str | None = None

    def step(self, key: Hashable, make: Callable[[], durable.Step]) -> durable.Step:
        """The step stored under ``key``, made once with ``make()`` (registering a step name
        twice is an error, so the same task's step is reused)."""
        with self._lock:
            step = self._steps.get(key)
            if step is None:
                step = self._steps[key] = make()
            return step

    def adopt(self, attempt_id: str, tasks: Iterable[Task]) -> None:
        """An execution of ``attempt_id`` begins: on a new attempt, forget the counts and
        reset the tasks' run records (a resumed execution of the same attempt keeps them)."""
        with self._lock:
            if self._current == attempt_id:
                return
            self._current = attempt_id
            self._attempts.clear()
        for task in tasks:
            task.reset()

    def forget(self) -> None:
        """The next execution starts over (a new ``Workflow.run()`` call)."""
        with self._lock:
            self._current = None

    def count_attempt(self, attempt_id: str, unit: Hashable) -> int:
        """Count one more attempt of ``unit`` in ``attempt_id``; its number (from 1)."""
        with self._lock:
            key = (attempt_id, unit)
            self._attempts[key] = number = self._attempts.get(key, 0) + 1
            return number

    def task_started(self, dag: Dag, task: Task) -> None:
        """An attempt of ``task`` starts: mark it RUNNING; the first one fires task_start."""
        record = task.run_info
        with self._lock:
            first = record.started is None
            if first:
                record.started = time.time()
            record.attempts += 1
            record.state = TaskState.RUNNING
        if first:
            notify(dag, "task_start", task)


class Catalog:
    """The DAGs defined in this process, by name (and by run for runs started here)."""

    def __init__(self) -> None:
        self._by_name: weakref.WeakValueDictionary[str, Dag] = weakref.WeakValueDictionary()
        self._by_run: dict[str, Dag] = {}
        self._books: weakref.WeakKeyDictionary[Dag, RunBook] = weakref.WeakKeyDictionary()
        self._changed = threading.Condition()

    def publish(self, dag: Dag) -> None:
        """Make ``dag`` the one a run of its name finds."""
        with self._changed:
            self._by_name[dag.name] = dag
            self._changed.notify_all()

    def bind(self, workflow_id: str, dag: Dag) -> None:
        """Run ``workflow_id`` uses ``dag`` (it was started here)."""
        with self._changed:
            self._by_run[workflow_id] = dag

    def unbind(self, workflow_id: str) -> None:
        with self._changed:
            self._by_run.pop(workflow_id, None)

    def book(self, dag: Dag) -> RunBook:
        """The run book of ``dag`` (made on first use)."""
        with self._changed:
            book = self._books.get(dag)
            if book is None:
                book = self._books[dag] = RunBook()
            return book

    def find(self, workflow_id: str, name: str, digest: str | None,
             grace: float) -> Dag | None:
        """The DAG for a run: the one that started it here, else the latest of that name.

        A DAG whose task names differ from the run's is waited on for ``grace`` seconds
        (its tasks may still be being added), then used all the same: replay then says
        precisely where the definition and the log disagree.
        """
        deadline = time.monotonic() + grace
        with self._changed:
            while True:
                dag = self._by_run.get(workflow_id) or self._by_name.get(name)
                if dag is not None and (digest is None or dag.fingerprint() == digest):
                    return dag
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return dag
                self._changed.wait(min(remaining, 0.05))


#: The DAGs of this process.
CATALOG = Catalog()
