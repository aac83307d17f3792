"""Changing workflow code safely: durable.patched() and continue_as_new."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

import durable
from durable.errors import NonDeterminismError, NotInWorkflow
from durable.runtime.registry import WORKFLOWS as _workflows
from tests.conftest import wait_until

Status = durable.Status
calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    calls.clear()
    yield
    for name in [n for n in _workflows if n.startswith("test_versioning.order")]:
        del _workflows[name]


@durable.step(name="test_versioning.work")
def work(name: str) -> str:
    calls.append(name)
    return name


def deploy_v1() -> durable.Workflow:
    @durable.workflow(name="test_versioning.order")
    def order() -> list[str]:
        done = [work("charge")]
        durable.wait_for_signal("go")
        return [*done, work("ship")]

    return order


def deploy_v2() -> durable.Workflow:
    """v1 with a fraud check inserted before the wait, behind a patch."""
    del _workflows["test_versioning.order"]

    @durable.workflow(name="test_versioning.order")
    def order() -> list[str]:
        done = [work("charge")]
        if durable.patched("fraud-check"):
            done.append(work("fraud check"))
        durable.wait_for_signal("go")
        return [*done, work("ship")]

    return order


def test_patched_is_false_for_a_run_started_before_the_change_and_true_after(
    engine: durable.Engine,
) -> None:
    v1 = deploy_v1()
    old = engine.start(v1, workflow_id="old")
    wait_until(lambda: old.status() is Status.WAITING)

    v2 = deploy_v2()
    new = engine.start(v2, workflow_id="new")
    wait_until(lambda: new.status() is Status.WAITING)
    old.signal("go")
    new.signal("go")

    assert old.result(timeout=5) == ["charge", "ship"]
    assert new.result(timeout=5) == ["charge", "fraud check", "ship"]
    assert Counter(calls) == {"charge": 2, "ship": 2, "fraud check": 1}
    assert engine.replay("old") == ["charge", "ship"]
    assert engine.replay("new") == ["charge", "fraud check", "ship"]
    assert [e.name for e in new.history() if e.kind == "patch"] == ["fraud-check"]
    assert not [e for e in old.history() if e.kind == "patch"]


def test_the_same_change_without_patched_is_a_divergence_for_old_runs(
    engine: durable.Engine,
) -> None:
    v1 = deploy_v1()
    old = engine.start(v1, workflow_id="old")
    wait_until(lambda: old.status() is Status.WAITING)
    del _workflows["test_versioning.order"]

    @durable.workflow(name="test_versioning.order")
    def order() -> list[str]:
        done = [work("charge"), work("fraud check")]
        durable.wait_for_signal("go")
        return [*done, work("ship")]

    with pytest.raises(NonDeterminismError, match="fraud check"):
        engine.replay("old")


def test_patched_only_inside_a_workflow() -> None:
    with pytest.raises(NotInWorkflow, match="patched"):
        durable.patched("x")


@durable.workflow(name="test_versioning.counter")
def counter(total: int, every: int, start: int = 0) -> int:
    i = start
    while i < total:
        work(f"i{i}")
        i += 1
        if i % every == 0 and i < total:
            durable.continue_as_new(total, every, start=i)
    return i


def test_continue_as_new_restarts_the_same_id_with_a_fresh_log(
    engine: durable.Engine,
) -> None:
    handle = engine.start(counter, 50, 10, workflow_id="loop")
    assert handle.result(timeout=10) == 50
    assert calls == [f"i{i}" for i in range(50)]
    (info,) = engine.list_workflows()
    assert info.run == 5
    for run in range(1, 6):  # each run replays only its own, short log
        assert len(engine.store.events("loop", run)) <= 10 + 2
    kinds = [e.kind for e in handle.history()]
    assert kinds.count("workflow.continued") == 4 and kinds.count("workflow.started") == 5
    assert engine.replay("loop") == 50


@durable.workflow(name="test_versioning.drain")
def drain(seen: list[object]) -> list[object]:
    item = durable.wait_for_signal("item")
    if item is None:
        return seen
    durable.continue_as_new([*seen, item])
    return []


def test_signals_not_yet_consumed_are_kept_for_the_next_run(engine: durable.Engine) -> None:
    handle = engine.start(drain, [], workflow_id="drain")
    for item in ["a", "b", "c", None]:
        handle.signal("item", item)
    assert handle.result(timeout=5) == ["a", "b", "c"]


@durable.workflow(name="test_versioning.echo")
def echo(n: int) -> int:
    return n


@durable.workflow(name="test_versioning.generations")
def generations(n: int) -> int:
    kid = echo(n)
    if n < 3:
        durable.continue_as_new(n + 1)
    return kid


def test_each_run_starts_its_own_children(engine: durable.Engine) -> None:
    assert engine.run(generations, 1, workflow_id="g") == 3
    kids = sorted(w.workflow_id for w in engine.list_workflows() if w.parent_id == "g")
    assert kids == ["g/call-1", "g/run-2/call-1", "g/run-3/call-1"]
    assert [engine.handle(k).result(timeout=1) for k in kids] == [1, 2, 3]


def test_continue_as_new_only_inside_a_workflow() -> None:
    with pytest.raises(NotInWorkflow):
        durable.continue_as_new()
