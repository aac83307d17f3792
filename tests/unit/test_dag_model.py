"""DAG task definitions, data flow, fallbacks and circuit breakers: pure, no engine."""

from __future__ import annotations

from typing import Any

import pytest

from durable import RetryPolicy
from durable.dag import CircuitBreaker, Fallback, Task, TaskState, Workflow, map_task, reduce_task
from durable.dag.patterns import choose_fallback
from durable.errors import CircuitOpen, TaskDefinitionError


def noop() -> None:
    return None


# -- definition-time errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"func": "not a function"}, "func: Input should be callable"),
        ({"func": noop, "max_retries": -1}, "max_retries"),
        ({"func": noop, "retry_delay": -0.5}, "retry_delay"),
        ({"func": noop, "timeout": 0}, "timeout"),
        ({"func": noop, "dependencies": ["a", "a"]}, "'a' is listed twice"),
        ({"func": noop, "resources": {"cpu": -1}}, "cannot be negative"),
        ({"func": noop, "unknown_option": 1}, "unknown_option"),
        ({"func": noop, "trigger": "sometimes"}, "trigger"),
    ],
)
def test_a_bad_task_definition_is_a_clear_error_at_once(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskDefinitionError, match=message) as caught:
        Task(name="t", **options)
    assert "task 't' is not valid" in str(caught.value)


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="non-empty"):
        Task(name=" ", func=noop)


def test_assigning_a_bad_value_later_is_refused_too() -> None:
    task = Task(name="t", func=noop)
    with pytest.raises(TaskDefinitionError, match="max_retries"):
        task.max_retries = -2
    assert task.max_retries == 0


def test_a_duplicate_task_name_is_refused_when_added() -> None:
    workflow = Workflow("dup")
    workflow.add_task(Task(name="a", func=noop))
    with pytest.raises(TaskDefinitionError, match="already added"):
        workflow.add_task(Task(name="a", func=noop))


def test_retry_policy_and_max_retries_cannot_both_be_given() -> None:
    with pytest.raises(TaskDefinitionError, match="not both"):
        Task(name="t", func=noop, max_retries=2, retry=RetryPolicy(max_attempts=3))


def test_a_map_function_needs_a_positional_parameter_for_the_item() -> None:
    with pytest.raises(TaskDefinitionError, match="positional parameter"):
        map_task("m", lambda: None, over="src")


def test_tasks_can_be_made_positionally_or_by_keyword() -> None:
    assert Task("a", noop).name == Task(name="a", func=noop).name == "a"
    with pytest.raises(TaskDefinitionError, match="given twice"):
        Task("a", noop, name="b")


def test_a_new_task_is_pending() -> None:
    task = Task(name="t", func=noop)
    assert task.state is TaskState.PENDING
    assert not task.state.finished and TaskState.SKIPPED.finished


# -- retries ----------------------------------------------------------------------


def test_max_retries_maps_to_a_fixed_retry_policy() -> None:
    policy = Task(name="t", func=noop, max_retries=3, retry_delay=0.25).retry_policy()
    assert policy.max_attempts == 4
    assert policy.backoff == "fixed"
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.25, 0.25, 0.25]


def test_an_explicit_retry_policy_is_kept_and_an_open_circuit_is_never_retried() -> None:
    given = RetryPolicy(max_attempts=5, backoff="exponential", initial_delay=0.1)
    policy = Task(name="t", func=noop, retry=given).retry_policy()
    assert policy.max_attempts == 5 and policy.backoff == "exponential"
    assert policy.retries(ValueError(), 1)
    assert not policy.retries(CircuitOpen("api", 3, 1.0), 1)


# -- data flow ----------------------------------------------------------------------


def test_parameters_named_after_dependencies_receive_their_results() -> None:
    def load(extract: list[int], transform: int, table: str = "t") -> None:
        return None

    task = Task(name="load", func=load, dependencies=["extract", "transform", "audit"],
                parameters={"table": "sales"})
    args, kwargs = task.arguments({"extract": [1], "transform": 2, "audit": "x"})
    assert args == ()
    assert kwargs == {"extract": [1], "transform": 2, "table": "sales"}


def test_a_function_with_var_keyword_receives_every_dependency() -> None:
    task = Task(name="t", func=lambda **upstream: upstream, dependencies=["a", "b"])
    assert task.arguments({"a": 1, "b": 2}) == ((), {"a": 1, "b": 2})


def test_a_map_item_and_a_reduce_input_go_to_the_first_positional_parameter() -> None:
    mapped = map_task("m", lambda row, factor: row * factor, over="rows",
                      dependencies=["factor"])
    assert mapped.dependencies == ["factor", "rows"]
    assert mapped.arguments({"rows": [1, 2], "factor": 3}, 2) == ((2,), {"factor": 3})
    reduced = reduce_task("total", sum, over="m")
    assert reduced.dependencies == ["m"]
    assert reduced.arguments({"m": [2, 4]}) == (([2, 4],), {})


def test_a_parameter_without_a_value_is_reported_by_validation() -> None:
    task = Task(name="load", func=lambda rows: rows)
    assert any("parameter 'rows'" in problem for problem in task.problems())
    task.dependencies = ["rows"]
    assert task.problems() == []


# -- fallbacks and recovery rules ----------------------------------------------------


def test_the_most_specific_recovery_rule_wins() -> None:
    rules = {OSError: Fallback.default("os"), FileNotFoundError: Fallback.skip("missing")}
    fallback = Fallback.default("any")
    assert choose_fallback(FileNotFoundError(), rules, fallback) == rules[FileNotFoundError]
    assert choose_fallback(PermissionError(), rules, fallback) == rules[OSError]
    assert choose_fallback(ValueError(), rules, fallback) == fallback
    assert choose_fallback(ValueError(), rules, None) is None


def test_fallback_constructors_describe_themselves() -> None:
    assert Fallback.default(0).describe() == "default value 0"
    assert "noop" in Fallback.function(noop).describe()
    assert Fallback.skip().kind == "skip" and Fallback.fail().kind == "fail"
    with pytest.raises(ValueError, match="callable"):
        Fallback.function(3)  # type: ignore[arg-type]


def test_recovery_rules_must_be_keyed_by_exception_types() -> None:
    with pytest.raises(TaskDefinitionError, match="recover"):
        Task(name="t", func=noop, recover={"ValueError": Fallback.skip()})


# -- circuit breaker -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("api", failure_threshold=2, reset_timeout=10, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen, match="'api' is open after 2") as caught:
        breaker.before_call()
    assert caught.value.retry_after == pytest.approx(10)


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker("api", failure_threshold=2, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_after_the_cool_down_one_trial_call_decides() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.state == "half-open"
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one trial at a time
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 5
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"


def test_bad_breaker_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("api", failure_threshold=0)


def test_tasks_naming_the_same_resource_share_one_breaker() -> None:
    workflow = Workflow("breakers", circuit_breakers=[CircuitBreaker("db", failure_threshold=7)])
    a = Task(name="a", func=noop, circuit_breaker="db")
    b = Task(name="b", func=noop, circuit_breaker="db")
    c = Task(name="c", func=noop, circuit_breaker="cache")
    breaker = workflow.breaker_for(a)
    assert breaker is workflow.breaker_for(b)
    assert breaker is not None and breaker.failure_threshold == 7
    made = workflow.breaker_for(c)
    assert made is not None and made.name == "cache" and made.failure_threshold == 5
