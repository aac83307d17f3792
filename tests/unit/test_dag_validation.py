"""DAG validation: every problem listed at once, cycles spelled out; builder and graph."""

from __future__ import annotations

import pytest

from durable.dag import Task, Workflow, WorkflowBuilder
from durable.dag.graph import critical_path, problems_and_order
from durable.errors import DagValidationError, InvalidArgument, TaskDefinitionError


def noop() -> None:
    return None


def dag(*edges: tuple[str, list[str]], **options: object) -> Workflow:
    workflow = Workflow("v", **options)  # type: ignore[arg-type]
    for name, dependencies in edges:
        workflow.add_task(Task(name=name, func=noop, dependencies=dependencies))
    return workflow


def test_a_cycle_is_spelled_out_in_run_order() -> None:
    workflow = dag(("a", ["c"]), ("b", ["a"]), ("c", ["b"]))
    with pytest.raises(DagValidationError) as caught:
        workflow.validate()
    assert "cycle: a -> b -> c -> a" in str(caught.value)
    assert caught.value.problems == ["cycle: a -> b -> c -> a"]


def test_a_task_that_depends_on_itself_is_a_cycle() -> None:
    with pytest.raises(DagValidationError, match="cycle: a -> a"):
        dag(("a", ["a"])).validate()


def test_a_missing_dependency_is_named_with_the_task_that_wants_it() -> None:
    with pytest.raises(DagValidationError) as caught:
        dag(("load", ["extract"])).validate()
    assert caught.value.problems == ["task 'load' depends on 'extract', which is not defined"]


def test_every_problem_is_listed_in_one_error() -> None:
    workflow = dag(("a", ["b"]), ("b", ["a"]), ("c", ["ghost"]), ("d", ["c", "phantom"]),
                   ("e", ["a"]), ("x", ["y"]), ("y", ["x"]))
    workflow.add_task(Task(name="p", func=lambda rows: rows))
    with pytest.raises(DagValidationError) as caught:
        workflow.validate()
    problems = caught.value.problems
    assert "task 'c' depends on 'ghost', which is not defined" in problems
    assert "task 'd' depends on 'phantom', which is not defined" in problems
    assert "cycle: a -> b -> a" in problems
    assert "cycle: x -> y -> x" in problems
    assert any("'e'" in p and "can never run" in p for p in problems)
    assert any("parameter 'rows'" in p for p in problems)
    assert f"({len(problems)} problems)" in str(caught.value)


def test_a_task_needing_more_than_the_capacity_is_refused() -> None:
    workflow = Workflow("cap", resources={"gpu": 1})
    workflow.add_task(Task(name="train", func=noop, resources={"gpu": 2}))
    with pytest.raises(DagValidationError, match="needs 2 'gpu' but the workflow has only 1"):
        workflow.validate()


def test_a_parameter_that_is_also_a_dependency_is_ambiguous() -> None:
    workflow = Workflow("amb")
    workflow.add_task(Task(name="a", func=noop))
    workflow.add_task(Task(name="b", func=lambda a: a, dependencies=["a"], parameters={"a": 1}))
    with pytest.raises(DagValidationError, match="both a dependency and a parameter"):
        workflow.validate()


def test_validation_returns_a_topological_order() -> None:
    order = dag(("c", ["b"]), ("b", ["a"]), ("a", [])).validate()
    assert order == ["a", "b", "c"]


def test_a_ten_thousand_task_chain_validates_without_recursion() -> None:
    workflow = dag(*((f"t{i}", [f"t{i - 1}"] if i else []) for i in range(10_000)))
    assert len(workflow.validate()) == 10_000


def test_a_ten_thousand_task_cycle_is_found_without_recursion() -> None:
    edges = [(f"t{i}", [f"t{(i - 1) % 10_000}"]) for i in range(10_000)]
    with pytest.raises(DagValidationError) as caught:
        dag(*edges).validate()
    assert caught.value.problems[0].startswith("cycle: t0 -> t1 -> t2")
    assert caught.value.problems[0].endswith("t9999 -> t0")


def test_critical_path_follows_the_longest_chain_of_durations() -> None:
    workflow = dag(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]))
    _, order = problems_and_order(workflow.tasks)
    path, total = critical_path(workflow.tasks, order, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert path == ["a", "b", "d"]
    assert total == 7


def test_the_builder_makes_the_same_workflow() -> None:
    built = (WorkflowBuilder("etl")
             .add_task("extract", noop)
             .add_task("load", lambda extract: extract).depends_on("extract")
             .with_retries(3, delay=0.5).with_timeout(5).with_priority(2)
             .build())
    load = built["load"]
    assert load.dependencies == ["extract"]
    assert (load.max_retries, load.retry_delay, load.timeout, load.priority) == (3, 0.5, 5, 2)
    assert built.validate() == ["extract", "load"]


def test_the_builder_validates_on_build() -> None:
    builder = WorkflowBuilder("bad").add_task("load", noop).depends_on("missing")
    with pytest.raises(DagValidationError, match="'missing'"):
        builder.build()


def test_the_builder_needs_a_task_before_configuring_one() -> None:
    with pytest.raises(InvalidArgument, match="add_task first"):
        WorkflowBuilder("empty").depends_on("x")


def test_bad_workflow_settings_are_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="max_workers"):
        Workflow("w", max_workers=0)
    with pytest.raises(TaskDefinitionError, match="strategy"):
        Workflow("w", strategy="random")  # type: ignore[arg-type]
