"""Sagas: compensations run in reverse order, exactly once each, across kill -9."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import durable
from durable.errors import InvalidArgument, NotInWorkflow, WorkflowCancelled, WorkflowFailed
from tests.conftest import wait_until
from tests.integration._procs import client, finish, kill9, lines, spawn

calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


@durable.step(name="test_sagas.reserve")
def reserve(what: str) -> str:
    calls.append(f"reserve {what}")
    if what == "car":
        raise RuntimeError("no cars left")
    return f"{what}-1"


@durable.step(name="test_sagas.release")
def release(booking: str) -> None:
    calls.append(f"release {booking}")
    if booking == "broken-1":
        raise ConnectionError("release service down")


@durable.workflow(name="test_sagas.trip")
def trip(items: list[str]) -> list[str]:
    bookings = []
    for what in items:
        booking = reserve(what)
        durable.compensate(release, booking)
        bookings.append(booking)
    return bookings


def test_a_failure_runs_the_compensations_in_reverse_order(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowFailed, match="no cars left") as failed:
        engine.run(trip, ["flight", "hotel", "car"], workflow_id="t")
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert calls == ["reserve flight", "reserve hotel", "reserve car",
                     "release hotel-1", "release flight-1"]


def test_a_success_runs_no_compensation(engine: durable.Engine) -> None:
    assert engine.run(trip, ["flight", "hotel"]) == ["flight-1", "hotel-1"]
    assert calls == ["reserve flight", "reserve hotel"]


def test_a_failing_compensation_does_not_stop_the_others(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowFailed, match="no cars left"):
        engine.run(trip, ["flight", "broken", "car"])
    assert calls[-2:] == ["release broken-1", "release flight-1"]


def test_compensations_are_recorded_and_not_rerun_on_replay(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowFailed):
        engine.run(trip, ["flight", "hotel", "car"], workflow_id="r")
    calls.clear()
    with pytest.raises(WorkflowFailed, match="no cars left"):
        engine.replay("r")
    assert calls == []
    released = [e for e in engine.history("r") if e.name == "test_sagas.release"
                and e.kind == "step.completed"]
    assert len(released) == 2


def test_compensate_takes_a_step_and_only_inside_a_workflow(engine: durable.Engine) -> None:
    @durable.workflow(name="test_sagas.bad")
    def bad() -> None:
        durable.compensate(print, "not a step")  # type: ignore[arg-type]

    with pytest.raises(WorkflowFailed, match="takes a @durable.step"):
        engine.run(bad)
    with pytest.raises(NotInWorkflow):
        durable.compensate(release, "x")
    with pytest.raises(InvalidArgument):
        durable.compensate(print)  # type: ignore[arg-type]


def _kill_mid_compensation(db: str, tmp_path: Path, name: str, cancel: bool) -> list[str]:
    """Run ``name`` in a worker, hold its compensation of the hotel, kill -9 the worker
    there, and let a new worker finish. Returns the effects."""
    effects, hold = tmp_path / "effects", tmp_path / "hold"
    hold.touch()
    worker = spawn(db, effects, name, "trip", "[]", HOLD="hotel-booking", HOLD_FILE=str(hold))
    with client(db) as engine:
        if cancel:
            wait_until(lambda: engine.store.workflow("trip") is not None
                       and engine.handle("trip").status() is durable.Status.WAITING)
            engine.cancel("trip")
        wait_until(lambda: "enter undo hotel-booking" in lines(effects), what="the hold")
        kill9(worker)
        worker = spawn(db, effects)
        with pytest.raises(WorkflowCancelled if cancel else WorkflowFailed):
            engine.handle("trip").result(timeout=10)
    finish(worker)
    return lines(effects)


def test_a_compensation_interrupted_by_kill_runs_once_and_the_others_are_not_rerun(
    db: str, tmp_path: Path
) -> None:
    effects = _kill_mid_compensation(db, tmp_path, "waiting.saga", cancel=False)
    assert [line for line in effects if line.startswith("undo")] == [
        "undo car-booking", "undo hotel-booking", "undo flight-booking"]
    assert Counter(effects)["enter undo hotel-booking"] == 2  # killed inside it once
    assert Counter(effects)["enter undo car-booking"] == 1


def test_compensations_of_a_cancel_survive_a_kill_in_the_middle(
    db: str, tmp_path: Path
) -> None:
    effects = _kill_mid_compensation(db, tmp_path, "waiting.saga_waiting", cancel=True)
    assert [line for line in effects if line.startswith("undo")] == [
        "undo hotel-booking", "undo flight-booking"]
    assert Counter(effects)["enter undo flight-booking"] == 1
    with client(db) as engine:
        kinds = [e.kind for e in engine.history("trip")]
    assert kinds.count("workflow.compensating") == 1
    assert kinds[-1] == "workflow.cancelled"
