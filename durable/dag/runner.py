"""A DAG run is a durable workflow whose steps are its tasks.

One generic workflow, ``durable.dag.run``, receives the DAG's name and the run's options,
finds the :class:`~durable.dag.Workflow` of that name defined in this process, and runs
its tasks as recorded steps (``dag:<dag>/<task>``) with ``durable.submit``.

Replay needs the order of calls to be a function of what the log holds. A ready-set
scheduler that launches a task as soon as another one ends would depend on which one
ended first, which differs between runs. So each time the scheduler waits, *which* tasks
it saw finish is itself recorded (a step ``durable.dag.wait`` returning their names), and
finished tasks are handled in that recorded order. A resumed run therefore makes exactly
the calls it made before the crash, answered from the log, and carries on live from
there: finished tasks do not run again.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from typing import Any

import durable
from durable.dag.catalog import CATALOG, Dag, notify
from durable.dag.graph import problems_and_order
from durable.dag.model import NO_ITEM, Task, TaskState
from durable.dag.patterns import choose_fallback
from durable.errors import (
    DagNotDefined,
    DagRunFailed,
    DagValidationError,
    NonDeterminismError,
    TaskTimeout,
)

DAG_WORKFLOW = "durable.dag.run"
WAIT_STEP = "durable.dag.wait"
OUTCOME_EVENT = "dag.outcome"
#: A recovered run waits this long for its DAG to be defined (e.g. still being built).
DEFINITION_GRACE = 5.0
SKIP_KEY = "__durable_dag_skipped__"

#: A unit of work is one recorded step call: (task, item index or -1, kind).
Unit = tuple[str, int, str]
TASK, FALLBACK, CHECK = "task", "fallback", "check"

_active: ContextVar[_Execution | None] = ContextVar("durable_dag_execution", default=None)


def skipped(reason: str) -> dict[str, str]:
    """The recorded result of a task that decided to skip (plain JSON, readable in the log)."""
    return {SKIP_KEY: reason}


def skip_reason(value: Any) -> str | None:
    if type(value) is dict and len(value) == 1 and SKIP_KEY in value:
        return str(value[SKIP_KEY])
    return None


@durable.workflow(name=DAG_WORKFLOW)
def run_dag(dag_name: str, options: dict[str, Any], carried: dict[str, Any]) -> Any:
    """The durable workflow of one DAG run (attempt): its tasks are its steps.

    Returns ``{"results": {...}, "skipped": {task: reason}, "failed": {}}``; raises
    :class:`DagRunFailed` (after publishing the same outcome as event ``dag.outcome``)
    when a task failed.
    """
    workflow_id = durable.workflow_id()
    run_id = str(options.get("run_id") or workflow_id)
    dag = CATALOG.find(workflow_id, dag_name, options.get("fingerprint"), DEFINITION_GRACE)
    if dag is None:
        raise DagNotDefined(dag_name, run_id)
    problems, _order = problems_and_order(dag.tasks, options.get("capacity") or {})
    if problems:
        raise DagValidationError(dag.name, problems)
    execution = _Execution(dag, workflow_id, run_id, options, carried)
    token = _active.set(execution)
    try:
        return execution.execute()
    finally:
        _active.reset(token)


def _wait_for_units() -> list[list[Any]]:
    execution = _active.get()
    assert execution is not None, "durable.dag.wait runs only inside a DAG run"
    return execution.wait_any()


_wait_step = durable.step(name=WAIT_STEP)(_wait_for_units)


def unit_body(task: str, kind: str) -> Callable[..., Any]:
    """The function of the recorded step of one task (one code location for every task,
    so that re-making a task's step is not a duplicate registration)."""

    def body(*args: Any) -> Any:
        execution = _active.get()
        if execution is None:
            raise RuntimeError(f"DAG task {task!r} ran outside its DAG run")
        return execution.run_unit((task, args[0] if args else -1, kind))

    return body


@dataclass
class _Map:
    """Progress of a map task's items."""

    items: list[Any]
    values: dict[int, Any] = field(default_factory=dict)
    unsettled: int = 0
    failure: BaseException | None = None


class _Execution:
    """One execution (or replay) of one DAG run, in the workflow's thread."""

    def __init__(self, dag: Dag, workflow_id: str, run_id: str, options: dict[str, Any],
                 carried: dict[str, Any]) -> None:
        self.dag, self.workflow_id, self.run_id = dag, workflow_id, run_id
        self.tasks: dict[str, Task] = dict(dag.tasks)
        self.max_workers = max(1, int(options.get("max_workers") or 1))
        self.capacity: dict[str, float] = dict(options.get("capacity") or {})
        self.carried = carried
        self.results: dict[str, Any] = {}
        self.states: dict[str, TaskState] = {}
        self.errors: dict[str, BaseException] = {}
        self.skips: dict[str, str] = {}
        self.roots: dict[str, str | None] = {}  # the failed task a skip goes back to
        self.dependents: dict[str, list[str]] = {name: [] for name in self.tasks}
        self.unfinished: dict[str, int] = {}
        self.resolved: set[str] = set()
        self.ready: list[tuple[int, str, int, int, Unit]] = []
        self.running: dict[Unit, durable.DurableFuture] = {}
        self.in_use: dict[str, float] = {}
        self.maps: dict[str, _Map] = {}
        self.unit_errors: dict[Unit, BaseException] = {}
        self.fallback_notes: dict[Unit, str] = {}
        self.live: set[str] = set()  # tasks with a unit that ran in this execution
        self.book = CATALOG.book(dag)
        self.book.adopt(workflow_id, self.tasks.values())

    # -- the scheduler (workflow thread) ------------------------------------------

    def execute(self) -> dict[str, Any]:
        for name, task in self.tasks.items():
            self.unfinished[name] = len(task.dependencies)
            for dep in task.dependencies:
                self.dependents[dep].append(name)
        for name, value in self.carried.items():
            if name in self.tasks and name not in self.states:
                self._finish(name, TaskState.SUCCESS, value=value, live=False,
                             note="kept from an earlier attempt")
        for name in self.tasks:
            if self.unfinished[name] == 0:
                self._resolve(name)
        while True:
            self._launch()
            if not self.running:
                break
            for key in _wait_step():
                unit: Unit = (str(key[0]), int(key[1]), str(key[2]))
                future = self.running.pop(unit, None)
                if future is None:
                    raise NonDeterminismError(
                        self.workflow_id, 0, f"DAG task unit {unit} finishing",
                        "no such unit running", f"durable.dag {self.dag.name!r}",
                        "the DAG definition changed since this run started",
                    )
                self._release(unit)
                self._settle(unit, future)
        return self._outcome()

    def _outcome(self) -> dict[str, Any]:
        failed = {n: f"{type(e).__name__}: {e}" for n, e in self.errors.items()}
        outcome = {
            "results": {n: self.results[n] for n in self.tasks
                        if self.states.get(n) is TaskState.SUCCESS},
            "skipped": {n: self.skips[n] for n in self.tasks if n in self.skips},
            "failed": {n: failed[n] for n in self.tasks if n in failed},
        }
        if failed:
            durable.set_event(OUTCOME_EVENT, outcome)
            error = DagRunFailed(self.dag.name, self.run_id, outcome["failed"],
                                 list(outcome["skipped"]))
            error.skip_reasons = outcome["skipped"]  # type: ignore[attr-defined]
            raise error
        return outcome

    def _resolve(self, name: str) -> None:
        """All of ``name``'s dependencies have ended: queue it, or skip it (once)."""
        if name in self.resolved or name in self.states:
            return
        self.resolved.add(name)
        task = self.tasks[name]
        blocker = self._blocker(task)
        if blocker is not None:
            self._skip(name, *blocker)
            return
        if task.map_over and task.run_if is not None:
            self._queue((name, -1, CHECK))
        elif task.map_over:
            self._expand(name)
        else:
            self._queue((name, -1, TASK))

    def _blocker(self, task: Task) -> tuple[str, str | None, bool] | None:
        """Why the task's trigger rule does not let it run: (reason, root failure, live)."""
        if task.trigger == "all_done":
            return None
        for dep in task.dependencies:
            state = self.states[dep]
            live = dep in self.live
            if state is TaskState.FAILURE:
                return f"upstream task {dep!r} failed", dep, live
            if state is TaskState.SKIPPED and task.trigger == "all_success":
                root = self.roots.get(dep)
                if root is not None:
                    return f"upstream task {root!r} failed (via {dep!r})", root, live
                return f"upstream task {dep!r} was skipped", None, live
        return None

    def _expand(self, name: str) -> None:
        task = self.tasks[name]
        assert task.map_over is not None
        source: Any = self.results.get(task.map_over)
        try:
            items = list(source)
        except TypeError:
            error = TypeError(f"map task {name!r} needs a list from {task.map_over!r}, "
                              f"which returned {type(source).__name__}")
            self._finish(name, TaskState.FAILURE, error=error, live=task.map_over in self.live)
            return
        progress = self.maps[name] = _Map(items, unsettled=len(items))
        task.run_info.items = len(items)
        if not items:
            self._finish(name, TaskState.SUCCESS, value=[], live=False)
        for index in range(len(progress.items)):
            self._queue((name, index, TASK))

    def _queue(self, unit: Unit) -> None:
        task = self.tasks[unit[0]]
        order = {CHECK: 0, TASK: 1, FALLBACK: 2}[unit[2]]
        heapq.heappush(self.ready, (-task.priority, unit[0], unit[1], order, unit))

    def _launch(self) -> None:
        deferred = []
        while self.ready and len(self.running) < self.max_workers:
            entry = heapq.heappop(self.ready)
            unit = entry[-1]
            progress = self.maps.get(unit[0])
            if progress is not None and progress.failure is not None and unit[2] == TASK:
                self._item_settled(unit[0])  # a failed map launches no more items
                continue
            needs = self.tasks[unit[0]].resources
            if not self._fits(needs):
                deferred.append(entry)
                continue
            for resource, amount in needs.items():
                self.in_use[resource] = self.in_use.get(resource, 0.0) + amount
            step = self._step_for(self.tasks[unit[0]], unit[2])
            args = () if unit[1] < 0 else (unit[1],)
            self.running[unit] = durable.submit(step, *args)
        for entry in deferred:
            heapq.heappush(self.ready, entry)

    def _step_for(self, task: Task, kind: str) -> durable.Step:
        policy = task.retry_policy() if kind == TASK else None
        suffix = "" if kind == TASK else f":{kind}"
        return self.book.step(
            (task.name, kind, id(task), policy),
            lambda: durable.step(name=f"dag:{self.dag.name}/{task.name}{suffix}",
                                 retry=policy)(unit_body(task.name, kind)),
        )

    def _fits(self, needs: dict[str, float]) -> bool:
        for resource, amount in needs.items():
            limit = self.capacity.get(resource)
            if limit is not None and self.in_use.get(resource, 0.0) + amount > limit + 1e-9:
                return False
        return True

    def _release(self, unit: Unit) -> None:
        for resource, amount in self.tasks[unit[0]].resources.items():
            self.in_use[resource] = self.in_use.get(resource, 0.0) - amount

    def _settle(self, unit: Unit, future: durable.DurableFuture) -> None:
        name, index, kind = unit
        task = self.tasks[name]
        try:
            value = future.result()
        except Exception as error:
            if kind == TASK and (task.fallback is not None or task.recover):
                self.unit_errors[unit] = error
                self._queue((name, index, FALLBACK))
            elif index < 0:
                self._finish(name, TaskState.FAILURE, error=error, live=name in self.live)
            else:
                progress = self.maps[name]
                progress.failure = progress.failure or error
                self._item_settled(name)
            return
        if kind == CHECK:
            if value:
                self._expand(name)
            else:
                self._skip(name, "run_if returned false", None, name in self.live)
            return
        reason = skip_reason(value)
        note = self.fallback_notes.get(unit, "recovered by its fallback") \
            if kind == FALLBACK else None
        if index >= 0:
            if reason is None:
                self.maps[name].values[index] = value
            self._item_settled(name)
        elif reason is not None:
            self._skip(name, reason, None, name in self.live)
        else:
            self._finish(name, TaskState.SUCCESS, value=value, live=name in self.live, note=note)

    def _item_settled(self, name: str) -> None:
        progress = self.maps[name]
        progress.unsettled -= 1
        if progress.unsettled > 0:
            return
        live = name in self.live
        if progress.failure is not None:
            self._finish(name, TaskState.FAILURE, error=progress.failure, live=live)
        else:
            values = [progress.values[i] for i in sorted(progress.values)]
            self._finish(name, TaskState.SUCCESS, value=values, live=live)

    def _skip(self, name: str, reason: str, root: str | None, live: bool) -> None:
        self.skips[name] = reason
        self.roots[name] = root
        self._finish(name, TaskState.SKIPPED, live=live, reason=reason)

    def _finish(self, name: str, state: TaskState, *, value: Any = None,
                error: BaseException | None = None, reason: str | None = None,
                live: bool, note: str | None = None) -> None:
        self.states[name] = state
        task = self.tasks[name]
        record = task.run_info
        record.state, record.note = state, note
        if state is TaskState.SUCCESS:
            self.results[name] = value
            record.result = value
        elif state is TaskState.FAILURE:
            assert error is not None
            self.errors[name] = error
            record.error = error
        else:
            record.skip_reason = reason
        if live:
            self.live.add(name)
            if state is TaskState.SUCCESS:
                notify(self.dag, "task_success", task, value)
            elif state is TaskState.FAILURE:
                notify(self.dag, "task_failure", task, error)
            else:
                notify(self.dag, "task_skip", task, reason)
        for child in self.dependents[name]:
            self.unfinished[child] -= 1
            if self.unfinished[child] == 0:
                self._resolve(child)

    # -- waiting (the recorded ``durable.dag.wait`` step) --------------------------

    def wait_any(self) -> list[list[Any]]:
        """Block until a running unit is done; the units done now, in a stable order.

        Returns early (maybe with none) when the engine shuts down, so that the run's
        next call suspends it at once instead of holding the engine's close.
        """
        futures = list(self.running.values())
        durable.DurableFuture.wait_first(futures)
        return [list(unit) for unit in sorted(self.running) if self.running[unit].done()]

    # -- one unit (a step thread) -------------------------------------------------

    def upstream(self, task: Task) -> dict[str, Any]:
        return {dep: self.results.get(dep) for dep in task.dependencies}

    def run_unit(self, unit: Unit) -> Any:
        name, _index, kind = unit
        task = self.tasks[name]
        self.live.add(name)
        if kind == CHECK:
            assert task.run_if is not None
            return bool(task.run_if(self.upstream(task)))
        if kind == FALLBACK:
            return self._run_fallback(task, unit)
        return self._run_attempt(task, unit)

    def _item(self, task: Task, index: int) -> Any:
        return NO_ITEM if index < 0 else self.maps[task.name].items[index]

    def _run_attempt(self, task: Task, unit: Unit) -> Any:
        attempt = self.book.count_attempt(self.workflow_id, unit)
        breaker = self.dag.breaker_for(task)
        try:
            if unit[1] < 0 and task.run_if is not None and not task.map_over \
                    and not task.run_if(self.upstream(task)):
                return skipped("run_if returned false")
            self.book.task_started(self.dag, task)
            if breaker is not None:
                breaker.before_call()
            args, kwargs = task.arguments(self.results, self._item(task, unit[1]))
            try:
                value = self._call(task, task.func, args, kwargs, task.timeout)
            except Exception:
                if breaker is not None:
                    breaker.record_failure()
                raise
            if breaker is not None:
                breaker.record_success()
            return value
        except Exception as error:
            if task.retry_policy().retries(error, attempt):
                task.run_info.state = TaskState.RETRYING
                notify(self.dag, "task_retry", task, error, attempt)
            raise
        finally:
            task.run_info.finished = time.time()

    def _run_fallback(self, task: Task, unit: Unit) -> Any:
        error = self.unit_errors[(unit[0], unit[1], TASK)]
        rule = choose_fallback(error, task.recover, task.fallback)
        if rule is None or rule.kind == "fail":
            raise error
        self.fallback_notes[unit] = f"fallback: {rule.describe()}"
        if rule.kind == "default":
            return rule.value
        if rule.kind == "skip":
            return skipped(rule.reason or f"fallback after {type(error).__name__}: {error}")
        assert rule.func is not None
        args, kwargs = task.arguments(self.results, self._item(task, unit[1]),
                                      func=rule.func, error=error)
        return self._call(task, rule.func, args, kwargs, None)

    def _call(self, task: Task, func: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], timeout: float | None) -> Any:
        if timeout is None:
            return _resolve_awaitable(func(*args, **kwargs))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = _resolve_awaitable(func(*args, **kwargs))
            except BaseException as error:
                box["error"] = error

        # Threads cannot be killed: on timeout the attempt is abandoned and its late
        # result dropped (a shell task's own timeout does kill its process).
        thread = threading.Thread(target=copy_context().run, args=(target,), daemon=True,
                                  name=f"durable-dag-{task.name}")
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TaskTimeout(self.workflow_id, _call_number(), task.name, timeout)
        if "error" in box:
            raise box["error"]
        return box["value"]


def _resolve_awaitable(value: Any) -> Any:
    if inspect.isawaitable(value):
        async def settle() -> Any:
            return await value

        return asyncio.run(settle())
    return value


def _call_number() -> int:
    try:
        return int(durable.step_key().rsplit(":", 1)[1])
    except Exception:  # outside a step (not reachable from a run): no call number to show
        return 0


def current_results() -> dict[str, Any] | None:
    """The results of the DAG run this thread belongs to (a task), or None."""
    execution = _active.get()
    return None if execution is None else execution.results


def current_dag() -> Dag | None:
    """The DAG whose run this thread belongs to (a task), or None."""
    execution = _active.get()
    return None if execution is None else execution.dag
