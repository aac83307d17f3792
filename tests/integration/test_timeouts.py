"""Durable timers across restarts, and workflow deadlines (timeout=) with their children."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from durable.errors import WorkflowFailed, WorkflowTimeout
from tests.conftest import wait_until
from tests.integration._procs import client, finish, kill9, lines, spawn

Status = durable.Status
calls: list[str] = []
gate = threading.Event()
entered = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    calls.clear()
    gate.clear()
    entered.clear()
    yield
    gate.set()


@durable.step(name="test_timeouts.work")
def work(name: str) -> str:
    calls.append(name)
    return name


@durable.step(name="test_timeouts.blocking")
def blocking() -> None:
    entered.set()
    gate.wait(10)


@durable.step(name="test_timeouts.undo")
def undo(name: str) -> None:
    calls.append(f"undo {name}")


@durable.workflow(name="test_timeouts.waits_forever", timeout=0.3)
def waits_forever() -> object:
    durable.compensate(undo, "booking")
    return durable.wait_for_signal("never")


@durable.workflow(name="test_timeouts.sleeps_too_long", timeout=0.3)
def sleeps_too_long() -> str:
    durable.sleep(60)
    return "woke"


@durable.workflow(name="test_timeouts.quick", timeout=30)
def quick() -> str:
    return work("quick")


@durable.workflow(name="test_timeouts.blocked_kid")
def blocked_kid() -> None:
    durable.compensate(undo, "kid")
    blocking()
    work("after the block")


@durable.workflow(name="test_timeouts.waiting_kid")
def waiting_kid() -> object:
    return durable.wait_for_signal("never")


@durable.workflow(name="test_timeouts.parent", timeout=0.5)
def parent(kid: str) -> object:
    return (blocked_kid if kid == "blocked" else waiting_kid)()


@durable.workflow(name="test_timeouts.parent_of_detached", timeout=0.3)
def parent_of_detached() -> object:
    durable.start_child(waiting_kid, detached=True)
    return durable.wait_for_signal("never")


def assert_timed_out(handle: durable.WorkflowHandle) -> None:
    with pytest.raises(WorkflowFailed, match="timeout") as failed:
        handle.result(timeout=10)
    assert isinstance(failed.value.__cause__, WorkflowTimeout)
    assert handle.status() is Status.FAILURE


# -- workflow deadlines ---------------------------------------------------------------


def test_a_workflow_waiting_for_a_signal_fails_when_its_deadline_passes(
    engine: durable.Engine,
) -> None:
    handle = engine.start(waits_forever, workflow_id="w")
    assert_timed_out(handle)
    assert calls == ["undo booking"]  # its compensations ran


def test_replay_of_a_timed_out_workflow_reproduces_the_timeout(
    engine: durable.Engine,
) -> None:
    handle = engine.start(waits_forever, workflow_id="rw")
    assert_timed_out(handle)
    calls.clear()
    with pytest.raises(WorkflowFailed, match="timeout") as failed:
        engine.replay("rw")
    assert isinstance(failed.value.__cause__, WorkflowTimeout)
    assert calls == []


def test_a_workflow_sleeping_past_its_deadline_fails_at_the_deadline(
    engine: durable.Engine,
) -> None:
    assert_timed_out(engine.start(sleeps_too_long, workflow_id="s"))


def test_a_workflow_that_ends_before_its_deadline_succeeds(engine: durable.Engine) -> None:
    assert engine.run(quick) == "quick"


def test_children_inherit_the_deadline_of_their_parent(engine: durable.Engine) -> None:
    handle = engine.start(parent, "waiting", workflow_id="p")
    wait_until(lambda: engine.store.workflow("p/call-1") is not None)
    parent_row, kid_row = engine.store.workflow("p"), engine.store.workflow("p/call-1")
    assert parent_row is not None and kid_row is not None
    assert kid_row.deadline == parent_row.deadline
    assert_timed_out(handle)
    wait_until(lambda: engine.handle("p/call-1").status().finished, what="the child to end")


def test_a_running_child_is_cancelled_when_its_parent_times_out(
    engine: durable.Engine,
) -> None:
    handle = engine.start(parent, "blocked", workflow_id="pb")
    assert entered.wait(5)
    assert_timed_out(handle)  # the parent fails while its child is stuck in a step
    gate.set()
    kid = engine.handle("pb/call-1")
    wait_until(lambda: kid.status() is Status.CANCELLED, what="the child to be cancelled")
    assert calls == ["undo kid"]  # it stopped at its next call and compensated


def test_a_detached_child_is_not_bound_by_its_parent_deadline(engine: durable.Engine) -> None:
    handle = engine.start(parent_of_detached, workflow_id="pd")
    assert_timed_out(handle)
    kid = engine.handle("pd/call-1")
    assert kid.status() is Status.WAITING
    kid.signal("never", "but it came")
    assert kid.result(timeout=5) == "but it came"


# -- timers ---------------------------------------------------------------------------


def test_a_sleep_across_a_kill_and_restart_does_not_restart_the_timer(
    db: str, tmp_path: Path
) -> None:
    effects, seconds = tmp_path / "effects", 1.0
    worker = spawn(db, effects, "waiting.sleeper", "z", f"[{seconds}]")
    with client(db) as engine:
        wait_until(lambda: engine.store.workflow("z") is not None
                   and engine.handle("z").status() is Status.WAITING, what="the sleep")
        kill9(worker)
        (started,) = [e.value for e in engine.history("z") if e.kind == "sleep.started"]
        due = started["due"]
        # Restart late in the sleep: a restarted timer would end a whole `seconds` later.
        wait_until(lambda: time.time() >= due - 0.3, timeout=seconds + 5)
        restarted = time.time()
        worker = spawn(db, effects)
        _, after = engine.handle("z").result(timeout=10)
        assert after >= due
        assert after < restarted + seconds
        assert [e.value for e in engine.history("z") if e.kind.startswith("sleep.")] == [
            {"due": due}, {"due": due}]
    finish(worker)
    assert lines(effects) == ["sleeping"]


def test_a_sleep_across_an_engine_restart_in_one_process(db: str) -> None:
    @durable.workflow(name="test_timeouts.nap")
    def nap() -> str:
        durable.sleep(0.3)
        return work("after nap")

    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        handle = engine.start(nap, workflow_id="nap")
        wait_until(lambda: handle.status() is Status.WAITING)
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        assert engine.handle("nap").result(timeout=5) == "after nap"
        kinds = [e.kind for e in engine.history("nap")]
    assert kinds.count("sleep.started") == 1 and kinds.count("sleep.fired") == 1
