"""Pause, resume and cancel: from the engine, the handle and another process."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
import durable.runtime.steps
from durable.errors import WorkflowCancelled, WorkflowFinished, WorkflowNotFound
from tests.conftest import wait_until
from tests.integration._procs import client, finish, lines, spawn

Status = durable.Status
calls: list[str] = []
gates: dict[str, threading.Event] = {}
entered: dict[str, threading.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    calls.clear()
    gates.clear()
    entered.clear()
    yield
    for gate in gates.values():  # never leave a step thread blocked
        gate.set()


def gate(name: str) -> threading.Event:
    gates[name], entered[name] = threading.Event(), threading.Event()
    return gates[name]


@durable.step(name="test_control.work")
def work(name: str) -> str:
    calls.append(name)
    if name in gates:
        entered[name].set()
        gates[name].wait(10)
    return name.upper()


@durable.step(name="test_control.undo")
def undo(name: str) -> None:
    calls.append(f"undo {name}")


@durable.workflow(name="test_control.steps")
def steps(names: list[str]) -> list[str]:
    return [work(name) for name in names]


@durable.workflow(name="test_control.saga")
def saga() -> object:
    durable.compensate(undo, "a")
    work("a")
    durable.compensate(undo, "b")
    work("b")
    return durable.wait_for_signal("confirm")


@durable.workflow(name="test_control.sleepy")
def sleepy() -> str:
    work("before")
    durable.sleep(60)
    return work("after")


def test_pause_freezes_steps_and_resume_finishes_without_rerunning_any(
    engine: durable.Engine,
) -> None:
    gate("s2")
    handle = engine.start(steps, ["s1", "s2", "s3", "s4"], workflow_id="p")
    assert entered["s2"].wait(5)
    handle.pause()  # s2 is running: the pause takes effect when it is recorded
    gates["s2"].set()
    wait_until(lambda: handle.status() is Status.PAUSED, what="PAUSED")
    # The engine keeps working (another workflow runs to its end) but this one is frozen.
    assert engine.run(steps, ["other"]) == ["OTHER"]
    assert calls == ["s1", "s2", "other"]
    assert handle.status() is Status.PAUSED

    handle.resume()
    assert handle.result(timeout=5) == ["S1", "S2", "S3", "S4"]
    assert Counter(calls) == Counter(["s1", "s2", "s3", "s4", "other"])


def test_pause_of_a_waiting_workflow_holds_its_signals_until_resume(
    engine: durable.Engine,
) -> None:
    handle = engine.start(saga, workflow_id="w")
    wait_until(lambda: handle.status() is Status.WAITING)
    engine.pause("w")
    assert handle.status() is Status.PAUSED
    handle.signal("confirm", "yes")
    assert engine.run(steps, ["other"]) == ["OTHER"]
    assert handle.status() is Status.PAUSED
    engine.resume("w")
    assert handle.result(timeout=5) == "yes"
    assert calls == ["a", "b", "other"]


def test_a_paused_timer_keeps_its_due_time(engine: durable.Engine) -> None:
    handle = engine.start(sleepy, workflow_id="t")
    wait_until(lambda: handle.status() is Status.WAITING)
    due = [e.value for e in handle.history() if e.kind == "sleep.started"]
    handle.pause()
    handle.resume()
    wait_until(lambda: handle.status() is Status.WAITING)
    assert [e.value for e in handle.history() if e.kind == "sleep.started"] == due
    assert calls == ["before"]


def test_pause_twice_and_resume_of_a_running_workflow_are_harmless(
    engine: durable.Engine,
) -> None:
    handle = engine.start(saga, workflow_id="r")
    wait_until(lambda: handle.status() is Status.WAITING)
    handle.resume()  # not paused: nothing to do
    handle.pause()
    handle.pause()
    assert handle.status() is Status.PAUSED
    handle.resume()
    handle.signal("confirm", 1)
    assert handle.result(timeout=5) == 1


def test_cancel_of_a_waiting_workflow_runs_its_compensations_in_reverse_order(
    engine: durable.Engine,
) -> None:
    handle = engine.start(saga, workflow_id="c")
    wait_until(lambda: handle.status() is Status.WAITING)
    handle.cancel()
    with pytest.raises(WorkflowCancelled, match="'c'"):
        handle.result(timeout=5)
    assert handle.status() is Status.CANCELLED
    assert calls == ["a", "b", "undo b", "undo a"]
    kinds = [e.kind for e in handle.history()]
    assert kinds[-1] == "workflow.cancelled" and "workflow.compensating" in kinds


def test_cancel_of_a_running_workflow_stops_it_at_its_next_call(
    engine: durable.Engine,
) -> None:
    gate("a")
    handle = engine.start(saga, workflow_id="run")
    assert entered["a"].wait(5)
    engine.cancel("run")
    gates["a"].set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert calls == ["a", "undo a"]  # "a" finished and was recorded; "b" never started


def test_a_cancelled_workflow_whose_compensation_retries_later_is_not_stuck(
    engine: durable.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every retry backoff suspends the workflow (none is waited inline), and the workflow
    # runs again by replay: it must stop at the same call, not diverge into its rest.
    monkeypatch.setattr(durable.runtime.steps, "INLINE_RETRY_DELAY", 0.0)
    attempts = Counter[str]()

    @durable.step(name="test_control.flaky_undo",
                  retry=durable.RetryPolicy(max_attempts=3, backoff="fixed", initial_delay=0.05))
    def flaky_undo(name: str) -> None:
        attempts[name] += 1
        if attempts[name] == 1:
            raise ConnectionError("try again")
        calls.append(f"undo {name}")

    @durable.workflow(name="test_control.flaky_saga")
    def flaky_saga() -> None:
        durable.compensate(flaky_undo, "a")
        work("a")
        durable.compensate(flaky_undo, "b")
        work("b")

    gate("a")
    handle = engine.start(flaky_saga, workflow_id="flaky")
    assert entered["a"].wait(5)
    handle.cancel()
    gates["a"].set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert calls == ["a", "undo a"]
    assert attempts == {"a": 2}
    assert handle.history()[-1].kind == "workflow.cancelled"


def test_cancel_and_pause_during_compensation_change_nothing(engine: durable.Engine) -> None:
    @durable.step(name="test_control.slow_undo")
    def slow_undo(name: str) -> None:
        calls.append(f"undo {name}")
        if name in gates:
            entered[name].set()
            gates[name].wait(10)

    @durable.workflow(name="test_control.slow_saga")
    def slow_saga() -> object:
        durable.compensate(slow_undo, "a")
        durable.compensate(slow_undo, "b")
        return durable.wait_for_signal("confirm")

    gate("b")
    handle = engine.start(slow_saga, workflow_id="sc")
    wait_until(lambda: handle.status() is Status.WAITING)
    handle.cancel()
    assert entered["b"].wait(5)
    handle.cancel()  # already compensating: nothing changes
    handle.pause()
    gates["b"].set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert calls == ["undo b", "undo a"]


def test_cancel_of_a_paused_workflow_cancels_it(engine: durable.Engine) -> None:
    handle = engine.start(saga, workflow_id="pc")
    wait_until(lambda: handle.status() is Status.WAITING)
    handle.pause()
    handle.cancel()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert calls == ["a", "b", "undo b", "undo a"]


def test_a_pause_after_a_cancel_does_not_undo_the_cancel(engine: durable.Engine) -> None:
    gate("a")
    handle = engine.start(saga, workflow_id="cp")
    assert entered["a"].wait(5)
    handle.cancel()
    handle.pause()
    handle.resume()
    gates["a"].set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)


def test_cancel_of_a_workflow_that_never_ran_ends_it_cancelled(db: str) -> None:
    with durable.Engine(db, workers=0) as client_engine:
        handle = client_engine.start(steps, ["x"], workflow_id="never")
        handle.cancel()
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine, pytest.raises(
        WorkflowCancelled
    ):
        engine.handle("never").result(timeout=5)
    assert calls == []


def test_replay_of_a_cancelled_workflow_reproduces_the_cancellation(
    engine: durable.Engine,
) -> None:
    handle = engine.start(saga, workflow_id="rc")
    wait_until(lambda: handle.status() is Status.WAITING)
    handle.cancel()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    calls.clear()
    with pytest.raises(WorkflowCancelled):
        engine.replay("rc")
    assert calls == []


def test_controls_of_a_finished_or_unknown_workflow_are_clear_errors(
    engine: durable.Engine,
) -> None:
    engine.run(steps, ["x"], workflow_id="done")
    for control in (engine.pause, engine.resume, engine.cancel):
        with pytest.raises(WorkflowFinished, match="'done'"):
            control("done")
        with pytest.raises(WorkflowNotFound, match="ghost"):
            control("ghost")


def test_cancel_from_another_process_runs_the_compensations_in_the_worker(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    worker = spawn(db, effects, "waiting.saga_waiting", "trip", "[]")
    with client(db) as engine:
        wait_until(lambda: engine.store.workflow("trip") is not None
                   and engine.handle("trip").status() is Status.WAITING)
        engine.cancel("trip")
        with pytest.raises(WorkflowCancelled):
            engine.handle("trip").result(timeout=10)
    finish(worker)
    assert lines(effects) == ["book flight", "book hotel", "enter undo hotel-booking",
                              "undo hotel-booking", "enter undo flight-booking",
                              "undo flight-booking"]


def test_pause_and_resume_from_another_process(db: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    worker = spawn(db, effects, "waiting.saga_waiting", "trip", "[]")
    with client(db) as engine:
        handle = engine.start("waiting.saga_waiting", workflow_id="trip")
        wait_until(lambda: handle.status() is Status.WAITING)
        handle.pause()
        handle.signal("confirm", "ok")
        assert handle.status() is Status.PAUSED
        handle.resume()
        assert handle.result(timeout=10) == "ok"
    finish(worker)
