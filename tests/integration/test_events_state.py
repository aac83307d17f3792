"""Published events (set_event / get_event) and durable.state, rebuilt on replay."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import durable
from durable.errors import NotInWorkflow, WorkflowNotFound
from tests.conftest import wait_until

Status = durable.Status
calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    calls.clear()
    yield


@durable.step(name="test_events_state.work")
def work(name: str) -> str:
    calls.append(name)
    return name


@durable.workflow(name="test_events_state.progress")
def progress(steps: int) -> str:
    for i in range(steps):
        work(f"s{i}")
        durable.set_event("progress", {"done": i + 1, "of": steps})
    durable.set_event("report", "all done")
    durable.wait_for_signal("close")
    return "closed"


@durable.workflow(name="test_events_state.stateful")
def stateful() -> dict[str, object]:
    durable.state["count"] = 1
    durable.state["tmp"] = "scratch"
    durable.sleep(0.05)  # suspends: the rest runs in a new execution, by replay
    durable.state["count"] = durable.state["count"] + 1
    del durable.state["tmp"]
    durable.wait_for_signal("go")
    durable.state.setdefault("extra", [work("once")])
    return dict(durable.state)


def test_get_event_returns_the_latest_published_value(engine: durable.Engine) -> None:
    handle = engine.start(progress, 3, workflow_id="p")
    wait_until(lambda: handle.status() is Status.WAITING)
    assert engine.get_event("p", "progress") == {"done": 3, "of": 3}
    assert handle.get_event("report") == "all done"
    assert engine.get_event("p", "missing", default="nothing") == "nothing"
    handle.signal("close")
    assert handle.result(timeout=5) == "closed"
    assert engine.get_event("p", "progress") == {"done": 3, "of": 3}  # still there after


def test_get_event_with_a_timeout_waits_for_the_value(engine: durable.Engine) -> None:
    gate = threading.Event()

    @durable.step(name="test_events_state.slow")
    def slow() -> None:
        gate.wait(10)

    @durable.workflow(name="test_events_state.late")
    def late() -> None:
        slow()
        durable.set_event("ready", True)

    engine.start(late, workflow_id="late")
    assert engine.get_event("late", "ready", default="not yet", timeout=0.05) == "not yet"
    opener = threading.Timer(0.05, gate.set)
    opener.start()
    try:
        assert engine.get_event("late", "ready", timeout=10) is True
    finally:
        opener.cancel()
        gate.set()


def test_get_event_of_an_unknown_workflow_raises(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowNotFound):
        engine.get_event("ghost", "progress")


def test_get_event_from_another_engine_reads_the_same_database(
    engine: durable.Engine, db: str
) -> None:
    handle = engine.start(progress, 1, workflow_id="x")
    with durable.Engine(db, workers=0) as other:
        assert other.get_event("x", "report", timeout=10) == "all done"
    handle.signal("close")
    handle.result(timeout=5)


def test_set_event_is_recorded_and_not_republished_on_replay(engine: durable.Engine) -> None:
    handle = engine.start(progress, 2, workflow_id="r")
    handle.signal("close")
    handle.result(timeout=5)
    events = [e for e in handle.history() if e.kind == "event.set"]
    assert [(e.name, e.value) for e in events] == [
        ("progress", {"done": 1, "of": 2}), ("progress", {"done": 2, "of": 2}),
        ("report", "all done")]
    assert engine.replay("r") == "closed"
    assert len([e for e in handle.history() if e.kind == "event.set"]) == 3


def test_state_is_rebuilt_on_replay_after_a_suspension(engine: durable.Engine) -> None:
    handle = engine.start(stateful, workflow_id="s")
    wait_until(lambda: handle.status() is Status.WAITING and any(
        e.kind == "signal.waiting" for e in handle.history()))
    handle.signal("go")
    expected = {"count": 2, "extra": ["once"]}
    assert handle.result(timeout=5) == expected
    assert engine.replay("s") == expected
    assert calls == ["once"]


def test_state_survives_a_restart_of_the_engine(db: str) -> None:
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        handle = engine.start(stateful, workflow_id="s")
        wait_until(lambda: any(e.kind == "signal.waiting" for e in handle.history()))
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        engine.send_signal("s", "go")
        assert engine.handle("s").result(timeout=5) == {"count": 2, "extra": ["once"]}


def test_state_and_events_only_inside_a_workflow() -> None:
    with pytest.raises(NotInWorkflow, match="state"):
        durable.state["x"] = 1
    with pytest.raises(NotInWorkflow, match="set_event"):
        durable.set_event("k", 1)
