"""Child workflows: deterministic ids, waiting without a thread, failure, cancellation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import durable
from durable.errors import WorkflowCancelled, WorkflowFailed
from tests.conftest import wait_until
from tests.integration._procs import client, finish, kill9, lines, spawn, waiting

Status = durable.Status


@durable.step(name="test_children.explode")
def explode(message: str) -> None:
    raise ValueError(message)


@durable.workflow(name="test_children.failing_kid")
def failing_kid() -> None:
    explode("kid broke")


@durable.workflow(name="test_children.waiting_kid")
def waiting_kid() -> object:
    return durable.wait_for_signal("go")


@durable.workflow(name="test_children.direct")
def direct(n: int) -> int:
    return int(waiting.kid(n)) + 1  # a direct call: start the child and wait for it


@durable.workflow(name="test_children.catching")
def catching() -> str:
    try:
        failing_kid()
    except WorkflowFailed as error:
        return f"caught {type(error.__cause__).__name__}: {error.__cause__}"
    return "unreachable"


@durable.workflow(name="test_children.catching_cancel")
def catching_cancel() -> str:
    try:
        waiting_kid()
    except WorkflowCancelled:
        return "child was cancelled"
    return "unreachable"


@durable.workflow(name="test_children.family")
def family() -> object:
    durable.start_child(waiting_kid)
    durable.start_child(waiting_kid, detached=True)
    return durable.wait_for_signal("never")


@durable.workflow(name="test_children.await_detached")
def await_detached() -> object:
    return durable.start_child(waiting_kid, detached=True).result()


def children(engine: durable.Engine, parent_id: str) -> list[str]:
    return sorted(w.workflow_id for w in engine.list_workflows(limit=1000)
                  if w.parent_id == parent_id)


def signal_when_waiting(engine: durable.Engine, workflow_id: str, payload: object) -> None:
    wait_until(lambda: engine.store.workflow(workflow_id) is not None
               and engine.handle(workflow_id).status() is Status.WAITING,
               what=f"{workflow_id} to wait")
    engine.send_signal(workflow_id, "go", payload)


def test_children_get_ids_from_their_parent_and_call_number(engine: durable.Engine) -> None:
    handle = engine.start(waiting.parent, workflow_id="p")
    signal_when_waiting(engine, "p/call-1", 1)
    signal_when_waiting(engine, "p/call-2", 2)
    assert handle.result(timeout=5) == ["p/call-1", "p/call-2", 11, 22]
    assert children(engine, "p") == ["p/call-1", "p/call-2"]
    assert engine.replay("p") == ["p/call-1", "p/call-2", 11, 22]


def test_child_ids_are_the_same_after_a_kill_and_no_child_starts_twice(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    worker = spawn(db, effects, "waiting.parent", "p", "[]")
    with client(db) as engine:
        wait_until(lambda: {"kid 1", "kid 2"} <= set(lines(effects)), what="both children")
        wait_until(lambda: engine.handle("p/call-2").status() is Status.WAITING)
        kill9(worker)
        worker = spawn(db, effects)
        signal_when_waiting(engine, "p/call-1", 3)
        signal_when_waiting(engine, "p/call-2", 4)
        assert engine.handle("p").result(timeout=10) == ["p/call-1", "p/call-2", 13, 24]
        assert children(engine, "p") == ["p/call-1", "p/call-2"]
        assert len(engine.list_workflows()) == 3
    finish(worker)
    assert Counter(lines(effects)) == {"kid 1": 1, "kid 2": 1}


def test_a_workflow_called_inside_a_workflow_runs_as_a_child(engine: durable.Engine) -> None:
    handle = engine.start(direct, 4, workflow_id="d")
    signal_when_waiting(engine, "d/call-1", 5)
    assert handle.result(timeout=5) == 46
    assert [e.kind for e in handle.history() if e.call == 1] == ["child.started",
                                                               "child.completed"]


def test_a_failed_child_raises_workflow_failed_in_its_parent(engine: durable.Engine) -> None:
    assert engine.run(catching, workflow_id="c") == "caught ValueError: kid broke"
    assert engine.handle("c/call-1").status() is Status.FAILURE


def test_a_cancelled_child_raises_workflow_cancelled_in_its_parent(
    engine: durable.Engine,
) -> None:
    handle = engine.start(catching_cancel, workflow_id="cc")
    wait_until(lambda: engine.store.workflow("cc/call-1") is not None
               and engine.handle("cc/call-1").status() is Status.WAITING)
    engine.cancel("cc/call-1")
    assert handle.result(timeout=5) == "child was cancelled"


def test_cancelling_a_parent_cancels_its_children_but_not_detached_ones(
    engine: durable.Engine,
) -> None:
    handle = engine.start(family, workflow_id="f")
    wait_until(lambda: all(engine.store.workflow(f"f/call-{n}") is not None
                           and engine.handle(f"f/call-{n}").status() is Status.WAITING
                           for n in (1, 2)))
    assert children(engine, "f") == ["f/call-1"]  # the detached one has no parent link
    handle.cancel()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    wait_until(lambda: engine.handle("f/call-1").status() is Status.CANCELLED)
    assert engine.handle("f/call-2").status() is Status.WAITING
    engine.send_signal("f/call-2", "go", "independent")
    assert engine.handle("f/call-2").result(timeout=5) == "independent"


def test_a_parent_waiting_on_a_detached_child_wakes_when_it_ends(
    engine: durable.Engine,
) -> None:
    handle = engine.start(await_detached, workflow_id="ad")
    signal_when_waiting(engine, "ad/call-1", "from detached")
    assert handle.result(timeout=5) == "from detached"


def test_a_child_may_be_awaited_long_after_it_ended(engine: durable.Engine) -> None:
    @durable.workflow(name="test_children.late")
    def late() -> list[object]:
        kid = durable.start_child(waiting_kid)
        first = durable.wait_for_signal("first")
        return [first, kid.result()]

    handle = engine.start(late, workflow_id="late")
    signal_when_waiting(engine, "late/call-1", "kid")
    wait_until(lambda: engine.handle("late/call-1").status() is Status.SUCCESS)
    handle.signal("first", "parent")
    assert handle.result(timeout=5) == ["parent", "kid"]


def test_a_fork_taken_while_a_child_runs_starts_its_own_child(engine: durable.Engine) -> None:
    handle = engine.start(waiting.parent, workflow_id="orig")
    signal_when_waiting(engine, "orig/call-1", 1)
    wait_until(lambda: any(e.kind == "child.completed" for e in handle.history()))
    wait_until(lambda: handle.status() is Status.WAITING)
    forked = engine.fork("orig", at=2, new_id="copy")  # child 1 ended, child 2 had not
    signal_when_waiting(engine, "copy/call-2", 7)
    assert forked.result(timeout=5) == ["copy/call-1", "copy/call-2", 11, 27]
    assert engine.store.workflow("copy/call-1") is None  # its recorded result was kept
    engine.send_signal("orig/call-2", "go", 2)
    assert handle.result(timeout=5) == ["orig/call-1", "orig/call-2", 11, 22]
