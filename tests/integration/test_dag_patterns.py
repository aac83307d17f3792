"""Orchestration patterns on a real engine: data flow, builder, conditions, map-reduce,
fallbacks, recovery rules, circuit breakers, strategies, resources, priority, callbacks."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import durable
from durable.dag import (
    CircuitBreaker,
    Fallback,
    Task,
    TaskState,
    Workflow,
    WorkflowBuilder,
    map_task,
    reduce_task,
)
from durable.errors import CircuitOpen, DagRunFailed


class Tracker:
    """Records the order tasks start in and how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.now: dict[str, float] = {}
        self.most: dict[str, float] = {}

    def task(self, name: str, hold: float = 0.0, **resources: float):  # type: ignore[no-untyped-def]
        def run() -> str:
            with self.lock:
                self.started.append(name)
                for resource, amount in {"slots": 1.0, **resources}.items():
                    self.now[resource] = self.now.get(resource, 0) + amount
                    self.most[resource] = max(self.most.get(resource, 0), self.now[resource])
            if hold:
                threading.Event().wait(hold)  # keep the slot so others overlap with it
            with self.lock:
                for resource, amount in {"slots": 1.0, **resources}.items():
                    self.now[resource] -= amount
            return name
        return run


def boom(message: str = "boom") -> Any:
    def run(**_: Any) -> None:
        raise ValueError(message)
    return run


# -- data flow and builder --------------------------------------------------------------


def test_results_flow_into_parameters_named_after_dependencies(engine: durable.Engine) -> None:
    workflow = Workflow("flow", engine=engine)
    workflow.add_task(Task(name="extract", func=lambda: [3, 1, 2]))
    workflow.add_task(Task(name="threshold", func=lambda: 1))
    workflow.add_task(Task(
        name="transform", dependencies=["extract", "threshold"],
        func=lambda extract, threshold, scale: [x * scale for x in extract if x > threshold],
        parameters={"scale": 10},
    ))
    assert workflow.run()["transform"] == [30, 20]


def test_the_builder_example_runs(engine: durable.Engine) -> None:
    workflow = (WorkflowBuilder("built", engine=engine)
                .add_task("extract", lambda: "rows")
                .add_task("load", lambda extract: f"loaded {extract}").depends_on("extract")
                .build())
    assert workflow.run() == {"extract": "rows", "load": "loaded rows"}


# -- conditions and trigger rules ---------------------------------------------------------


def test_a_false_condition_skips_the_task_and_its_dependents(engine: durable.Engine) -> None:
    workflow = Workflow("conditions", engine=engine)
    workflow.add_task(Task(name="count", func=lambda: 0))
    workflow.add_task(Task(name="report", func=lambda count: count, dependencies=["count"],
                           run_if=lambda upstream: upstream["count"] > 0))
    workflow.add_task(Task(name="mail", func=lambda report: report, dependencies=["report"]))
    workflow.add_task(Task(name="log", func=lambda count: "logged", dependencies=["count"],
                           run_if=lambda upstream: upstream["count"] == 0))
    assert workflow.run() == {"count": 0, "log": "logged"}
    assert workflow["report"].state is TaskState.SKIPPED
    assert workflow["report"].skip_reason == "run_if returned false"
    assert workflow["mail"].skip_reason == "upstream task 'report' was skipped"


def test_trigger_rules_let_clean_up_and_join_tasks_run(engine: durable.Engine) -> None:
    workflow = Workflow("triggers", engine=engine)
    workflow.add_task(Task(name="work", func=boom()))
    workflow.add_task(Task(name="cleanup", func=lambda: "cleaned", dependencies=["work"],
                           trigger="all_done"))
    workflow.add_task(Task(name="maybe", func=lambda: 1, run_if=lambda _: False))
    workflow.add_task(Task(name="join", func=lambda maybe: maybe, dependencies=["maybe"],
                           trigger="none_failed"))
    with pytest.raises(DagRunFailed):
        workflow.run()
    assert workflow.results == {"cleanup": "cleaned", "join": None}


# -- map-reduce ---------------------------------------------------------------------------


def test_map_fans_out_over_an_upstream_list_and_reduce_gathers(engine: durable.Engine) -> None:
    seen: list[int] = []
    workflow = Workflow("mapreduce", engine=engine)
    workflow.add_task(Task(name="numbers", func=lambda: [1, 2, 3, 4]))
    workflow.add_task(map_task("squares", lambda n: seen.append(n) or n * n, over="numbers"))
    workflow.add_task(reduce_task("total", sum, over="squares"))
    results = workflow.run(run_id="mapreduce-1")
    assert results["squares"] == [1, 4, 9, 16]
    assert results["total"] == 30
    assert sorted(seen) == [1, 2, 3, 4]
    item_steps = [e.args for e in engine.history("mapreduce-1")
                  if e.name == "dag:mapreduce/squares" and e.kind == "step.completed"]
    # each item is its own recorded step
    assert sorted(item_steps) == ["(0,)", "(1,)", "(2,)", "(3,)"]
    assert "4 items" in str(workflow.report())


def test_a_map_over_an_empty_list_gives_an_empty_list(engine: durable.Engine) -> None:
    workflow = Workflow("empty-map", engine=engine)
    workflow.add_task(Task(name="none", func=list))
    workflow.add_task(map_task("each", lambda item: item, over="none"))
    assert workflow.run() == {"none": [], "each": []}


def test_a_failed_item_fails_the_map_and_an_item_fallback_replaces_it(
    engine: durable.Engine,
) -> None:
    def invert(n: int) -> float:
        return 1 / n

    failing = Workflow("map-fails", engine=engine, max_workers=1)
    failing.add_task(Task(name="numbers", func=lambda: [1, 0, 2]))
    failing.add_task(map_task("inverse", invert, over="numbers"))
    with pytest.raises(DagRunFailed, match="ZeroDivisionError"):
        failing.run()

    recovering = Workflow("map-recovers", engine=engine)
    recovering.add_task(Task(name="numbers", func=lambda: [1, 0, 4]))
    recovering.add_task(map_task("inverse", invert, over="numbers",
                                 recover={ZeroDivisionError: Fallback.default(None)}))
    assert recovering.run()["inverse"] == [1.0, None, 0.25]


def test_a_map_over_something_that_is_not_a_list_fails_clearly(engine: durable.Engine) -> None:
    workflow = Workflow("map-bad", engine=engine)
    workflow.add_task(Task(name="number", func=lambda: 3))
    workflow.add_task(map_task("each", lambda item: item, over="number"))
    with pytest.raises(DagRunFailed, match="needs a list from 'number', which returned int"):
        workflow.run()


# -- fallbacks and recovery rules ------------------------------------------------------------


def test_a_default_value_replaces_a_result_after_the_retries(engine: durable.Engine) -> None:
    attempts: list[int] = []
    workflow = Workflow("default", engine=engine)
    workflow.add_task(Task(name="rates", func=lambda: attempts.append(1) or boom()(),
                           max_retries=2, retry_delay=0, fallback=Fallback.default({"EUR": 1})))
    workflow.add_task(Task(name="convert", func=lambda rates: rates["EUR"] * 5,
                           dependencies=["rates"]))
    assert workflow.run() == {"rates": {"EUR": 1}, "convert": 5}
    assert len(attempts) == 3
    assert workflow["rates"].state is TaskState.SUCCESS
    assert "fallback: default value" in str(workflow.report())


def test_an_alternative_function_runs_with_the_same_arguments_and_the_error(
    engine: durable.Engine,
) -> None:
    def primary(city: str) -> str:
        raise TimeoutError(f"{city} service slow")

    def secondary(city: str, error: BaseException) -> str:
        return f"{city} from cache after {type(error).__name__}"

    workflow = Workflow("alternative", engine=engine)
    workflow.add_task(Task(name="city", func=lambda: "Lyon"))
    workflow.add_task(Task(name="weather", func=primary, dependencies=["city"],
                           fallback=Fallback.function(secondary)))
    assert workflow.run()["weather"] == "Lyon from cache after TimeoutError"


def test_a_skip_fallback_skips_the_task_and_its_dependents(engine: durable.Engine) -> None:
    workflow = Workflow("skip-fallback", engine=engine)
    workflow.add_task(Task(name="optional", func=boom("no data"),
                           fallback=Fallback.skip("optional data unavailable")))
    workflow.add_task(Task(name="enrich", func=lambda optional: optional,
                           dependencies=["optional"]))
    assert workflow.run() == {}
    assert workflow["optional"].skip_reason == "optional data unavailable"
    assert workflow["enrich"].state is TaskState.SKIPPED


def test_recovery_rules_are_chosen_by_exception_type(engine: durable.Engine) -> None:
    errors = {"missing": FileNotFoundError("gone"), "denied": PermissionError("no"),
              "other": ValueError("bad")}
    rules = {FileNotFoundError: Fallback.default("empty"), OSError: Fallback.skip("os error"),
             ValueError: Fallback.fail()}
    workflow = Workflow("rules", engine=engine)
    for name, error in errors.items():
        def raise_it(error: BaseException = error) -> None:
            raise error
        workflow.add_task(Task(name=name, func=raise_it, recover=rules,
                               fallback=Fallback.default("never used for ValueError")))
    with pytest.raises(DagRunFailed) as caught:
        workflow.run()
    assert caught.value.failed == {"other": "ValueError: bad"}
    assert workflow.results == {"missing": "empty"}
    assert workflow["denied"].skip_reason == "os error"


def test_a_fallback_that_fails_fails_the_task(engine: durable.Engine) -> None:
    workflow = Workflow("fallback-fails", engine=engine)
    workflow.add_task(Task(name="a", func=boom("first"),
                           fallback=Fallback.function(boom("second"))))
    with pytest.raises(DagRunFailed, match="ValueError: second"):
        workflow.run()


# -- circuit breaker ---------------------------------------------------------------------


def test_a_circuit_breaker_shared_by_tasks_fails_fast_then_recovers_after_the_cool_down(
    engine: durable.Engine,
) -> None:
    clock = {"now": 0.0}
    breaker = CircuitBreaker("payments", failure_threshold=2, reset_timeout=30,
                             clock=lambda: clock["now"])
    calls: list[str] = []
    service = {"up": False}

    def charge(name: str):  # type: ignore[no-untyped-def]
        def run() -> str:
            calls.append(name)
            if not service["up"]:
                raise ConnectionError("payments down")
            return name
        return run

    workflow = Workflow("breaker", engine=engine, strategy="sequential",
                        circuit_breakers=[breaker])
    for name in ("c1", "c2", "c3", "c4"):
        workflow.add_task(Task(name=name, func=charge(name), circuit_breaker="payments"))
    with pytest.raises(DagRunFailed):
        workflow.run(run_id="charges")
    assert calls == ["c1", "c2"]  # c3 and c4 failed fast: the service was not called
    assert isinstance(workflow["c3"].error, CircuitOpen)
    assert "'payments' is open after 2 consecutive failure(s)" in str(workflow["c4"].error)

    service["up"] = True
    clock["now"] += 30
    assert set(workflow.run(run_id="charges")) == {"c1", "c2", "c3", "c4"}
    assert breaker.state == "closed"


# -- strategies, resources, priority -----------------------------------------------------


def test_the_sequential_strategy_runs_one_task_at_a_time_in_priority_order(
    engine: durable.Engine,
) -> None:
    tracker = Tracker()
    workflow = Workflow("sequential", engine=engine, strategy="sequential")
    for name, priority in (("low", 0), ("high", 5), ("mid", 1), ("also-low", 0)):
        workflow.add_task(Task(name=name, func=tracker.task(name, hold=0.01),
                               priority=priority))
    workflow.run(max_workers=8)
    assert tracker.most["slots"] == 1
    assert tracker.started == ["high", "mid", "also-low", "low"]


def test_ready_tasks_start_by_priority(engine: durable.Engine) -> None:
    tracker = Tracker()
    workflow = Workflow("priority", engine=engine, max_workers=1)
    workflow.add_task(Task(name="first", func=tracker.task("first")))
    for name, priority in (("b", 1), ("a", 1), ("z", 9), ("c", -3)):
        workflow.add_task(Task(name=name, func=tracker.task(name), priority=priority,
                               dependencies=["first"]))
    workflow.run()
    assert tracker.started == ["first", "z", "a", "b", "c"]


def test_the_run_never_exceeds_the_declared_resource_capacity(engine: durable.Engine) -> None:
    tracker = Tracker()
    workflow = Workflow("resources", engine=engine, max_workers=8,
                        resources={"cpu": 4, "gpu": 1})
    needs = [{"cpu": 2}, {"cpu": 2}, {"cpu": 3}, {"cpu": 1, "gpu": 1}, {"gpu": 1},
             {"cpu": 4}, {"cpu": 1}, {"cpu": 1}]
    for i, need in enumerate(needs):
        workflow.add_task(Task(name=f"t{i}", func=tracker.task(f"t{i}", 0.02, **need),
                               resources=need))
    workflow.run()
    assert len(tracker.started) == len(needs)
    assert tracker.most["cpu"] <= 4
    assert tracker.most["gpu"] <= 1
    assert tracker.most["slots"] >= 2  # it still ran tasks side by side


# -- callbacks -------------------------------------------------------------------------------


def test_callbacks_report_starts_retries_successes_failures_and_skips(
    engine: durable.Engine,
) -> None:
    events: list[tuple[str, ...]] = []
    lock = threading.Lock()
    tries: list[int] = []

    def note(*event: str) -> None:
        with lock:
            events.append(event)

    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("blip")
        return "ok"

    workflow = Workflow("callbacks", engine=engine, max_workers=1)
    workflow.on_task_start(lambda task: note("start", task.name))
    workflow.on_task_retry(lambda task, error, attempt: note("retry", task.name, str(attempt)))
    workflow.on_task_success(lambda task, result: note("success", task.name, str(result)))
    workflow.on_task_failure(lambda task, error: note("failure", task.name, str(error)))
    workflow.on_task_skip(lambda task, reason: note("skip", task.name, reason))

    @workflow.on_task_success
    def broken_observer(task: Task, result: Any) -> None:
        raise RuntimeError("observers cannot break a run")

    workflow.add_task(Task(name="a", func=flaky, max_retries=1, retry_delay=0))
    workflow.add_task(Task(name="b", func=boom("bad"), dependencies=["a"]))
    workflow.add_task(Task(name="c", func=lambda: 1, dependencies=["b"]))
    with pytest.raises(DagRunFailed):
        workflow.run()
    assert events == [
        ("start", "a"), ("retry", "a", "1"), ("success", "a", "ok"),
        ("start", "b"), ("failure", "b", "bad"),
        ("skip", "c", "upstream task 'b' failed"),
    ]
