"""Issue 10, controls: a pending cancel wins, DIVERGED, terminate, resume of a set-aside
workflow, fork's events and warnings, child id conflicts, bad names."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import durable
from durable.cli import cli
from durable.errors import (
    ChildConflict,
    InvalidArgument,
    NonDeterminismError,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowFinished,
    WorkflowTerminated,
)
from durable.store import Fenced, NewEvent
from tests.conftest import wait_until

Status = durable.Status
calls: list[str] = []
between = threading.Event()  # set while a workflow sits in plain code between steps
release = threading.Event()
flags = {"diverge": False}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    calls.clear()
    between.clear()
    release.clear()
    flags["diverge"] = False
    yield
    release.set()


@durable.step(name="trustctl.work")
def work(name: str) -> str:
    calls.append(name)
    return name


@durable.step(name="trustctl.undo")
def undo(name: str) -> None:
    calls.append(f"undo {name}")


@durable.workflow(name="trustctl.plain_gap")
def plain_gap(last: bool) -> list[str]:
    """A step, then plain code that waits (not recorded), then maybe another step."""
    durable.compensate(undo, "a")
    done = [work("a")]
    between.set()
    release.wait(10)
    if not last:
        done.append(work("b"))
    return done


@durable.workflow(name="trustctl.waits")
def waits() -> object:
    durable.compensate(undo, "a")
    work("a")
    return durable.wait_for_signal("go")


@durable.workflow(name="trustctl.parent")
def parent() -> object:
    return waits()


@durable.workflow(name="trustctl.publisher")
def publisher() -> str:
    durable.set_event("stage", "one")
    work("x")
    durable.set_event("stage", "two")
    work("y")
    return "done"


# -- a pending cancel wins ------------------------------------------------------------


@pytest.mark.parametrize("sender", ["same engine", "another client"])
def test_a_cancel_accepted_between_steps_in_plain_code_starts_no_step(
    engine: durable.Engine, db: str, sender: str
) -> None:
    handle = engine.start(plain_gap, False, workflow_id="gap")
    assert between.wait(5)
    if sender == "same engine":
        engine.cancel("gap")
    else:  # another process's cancel: no in-memory hint reaches the running engine
        with durable.Engine(db, workers=0) as other:
            other.cancel("gap")
    release.set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert calls == ["a", "undo a"]  # b never started; the compensation ran


def test_a_cancel_after_the_last_step_ends_cancelled_not_success(
    engine: durable.Engine, db: str
) -> None:
    handle = engine.start(plain_gap, True, workflow_id="late")
    assert between.wait(5)
    with durable.Engine(db, workers=0) as other:
        other.cancel("late")
    release.set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert handle.status() is Status.CANCELLED
    assert calls == ["a", "undo a"]
    kinds = [e.kind for e in handle.history()]
    assert kinds[-1] == "workflow.cancelled" and "workflow.completed" not in kinds


# -- DIVERGED -------------------------------------------------------------------------


@durable.workflow(name="trustctl.diverging")
def diverging() -> object:
    work("new" if flags["diverge"] else "a")
    return durable.wait_for_signal("go")


def _diverged(engine: durable.Engine, workflow_id: str) -> durable.WorkflowHandle:
    handle = engine.start(diverging, workflow_id=workflow_id)
    wait_until(lambda: handle.status() is Status.WAITING)
    flags["diverge"] = True
    handle.signal("go", 1)
    wait_until(lambda: handle.status() is Status.DIVERGED, what="DIVERGED")
    return handle


def test_a_diverged_workflow_has_its_own_status_listed_and_filtered(
    engine: durable.Engine, db: str
) -> None:
    handle = _diverged(engine, "div")
    engine.start(waits, workflow_id="fine")
    assert [i.workflow_id for i in engine.list_workflows(status=Status.DIVERGED)] == ["div"]
    assert not Status.DIVERGED.finished
    with pytest.raises(NonDeterminismError):
        handle.result(timeout=1)
    out = CliRunner().invoke(cli, ["list", "--status", "DIVERGED", "--db", db])
    assert out.exit_code == 0, out.output
    assert "div" in out.output and "DIVERGED" in out.output and "fine" not in out.output
    shown = CliRunner().invoke(cli, ["show", "div", "--db", db])
    assert "DIVERGED" in shown.output


def test_resume_of_a_diverged_workflow_clears_its_error_at_once(db: str) -> None:
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        handle = _diverged(engine, "div")
    flags["diverge"] = False  # the fix is deployed
    with durable.Engine(db, workers=0) as client:
        client.resume("div")
        row = client.row("div")
        assert row.error is None and row.status != Status.DIVERGED
        with pytest.raises(durable.errors.WaitTimeout):  # not the old NonDeterminismError
            client.handle("div").result(timeout=0.1)
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        assert engine.handle("div").result(timeout=5) == 1
    del handle


def test_cancelling_a_diverged_workflow_ends_it_at_once(engine: durable.Engine) -> None:
    handle = _diverged(engine, "div")
    handle.cancel()
    assert handle.status() is Status.CANCELLED
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=1)
    assert [e.kind for e in handle.history()][-1] == "workflow.cancelled"


@durable.workflow(name="trustctl.late_divergence")
def late_divergence() -> object:
    work("a")
    durable.wait_for_signal("one")
    if flags["diverge"]:
        between.set()
        release.wait(10)
    work("new" if flags["diverge"] else "b")
    return durable.wait_for_signal("two")


def test_a_cancel_that_meets_a_divergence_ends_the_workflow_instead_of_wedging_it(
    engine: durable.Engine, db: str
) -> None:
    handle = engine.start(late_divergence, workflow_id="late")
    handle.signal("one")
    wait_until(lambda: calls == ["a", "b"] and handle.status() is Status.WAITING)
    flags["diverge"] = True
    handle.signal("two")
    assert between.wait(5)  # replaying, about to diverge
    with durable.Engine(db, workers=0) as other:
        other.cancel("late")
    release.set()
    with pytest.raises(WorkflowCancelled):
        handle.result(timeout=5)
    assert engine.row("late").owner is None


# -- terminate ------------------------------------------------------------------------


def test_terminate_ends_a_waiting_workflow_without_compensations_nor_replay(
    engine: durable.Engine,
) -> None:
    handle = engine.start(waits, workflow_id="t")
    wait_until(lambda: handle.status() is Status.WAITING)
    engine.terminate("t", "wrong customer")
    assert handle.status() is Status.FAILURE
    with pytest.raises(WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert isinstance(failed.value.__cause__, WorkflowTerminated)
    assert "wrong customer" in str(failed.value.__cause__)
    assert calls == ["a"]  # the compensation did not run
    positions = [e.position for e in handle.history()]
    assert positions == list(range(len(positions)))
    with pytest.raises(WorkflowFinished):
        engine.terminate("t")
    with pytest.raises(WorkflowFailed):  # replay reproduces the termination, no divergence
        engine.replay("t")


def test_terminate_of_a_diverged_workflow_and_of_attached_children(
    engine: durable.Engine,
) -> None:
    handle = _diverged(engine, "div")
    handle.terminate("gave up")
    assert handle.status() is Status.FAILURE

    p = engine.start(parent, workflow_id="p")
    wait_until(lambda: engine.store.workflow("p/call-1") is not None
               and engine.handle("p/call-1").status() is Status.WAITING)
    engine.terminate("p")
    assert engine.handle("p/call-1").status() is Status.FAILURE
    assert p.status() is Status.FAILURE
    with pytest.raises(WorkflowFailed) as failed:
        engine.handle("p/call-1").result(timeout=1)
    assert "its parent 'p' was terminated" in str(failed.value.__cause__)


def test_terminate_fences_the_owner_and_no_later_step_starts(
    engine: durable.Engine,
) -> None:
    handle = engine.start(plain_gap, False, workflow_id="gap")
    assert between.wait(5)
    owner = engine.row("gap").owner
    assert owner is not None
    engine.terminate("gap")
    release.set()
    wait_until(lambda: engine.row("gap").owner is None and not engine._executor._busy)
    assert calls == ["a"]
    # The old owner's next append is fenced.
    last = engine.history("gap")[-1].position
    with pytest.raises(Fenced):
        engine.store.append("gap", owner, [NewEvent(last + 1, 9, "value", "x")])
    assert handle.status() is Status.FAILURE


def test_durable_terminate_on_the_command_line(engine: durable.Engine, db: str) -> None:
    engine.start(waits, workflow_id="t")
    wait_until(lambda: engine.handle("t").status() is Status.WAITING)
    out = CliRunner().invoke(cli, ["terminate", "t", "--reason", "ops", "--db", db])
    assert out.exit_code == 0, out.output
    assert "terminated" in out.output
    assert engine.handle("t").status() is Status.FAILURE
    again = CliRunner().invoke(cli, ["terminate", "t", "--db", db])
    assert again.exit_code == 2 and "already ended" in again.output


# -- fork -----------------------------------------------------------------------------


def test_fork_republishes_kept_events_refuses_past_the_end_and_warns_of_reruns(
    engine: durable.Engine, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert engine.run(publisher, workflow_id="pub") == "done"
    calls.clear()
    with pytest.raises(InvalidArgument, match=r"ends at call #4 \(step trustctl.work"):
        engine.fork("pub", at=5)
    with caplog.at_level(logging.WARNING, logger="durable"):
        forked = engine.fork("pub", at=1, new_id="pub2")
    assert engine.get_event("pub2", "stage") == "one"  # before the fork runs a thing
    assert "#2 trustctl.work" in caplog.text and "#4 trustctl.work" in caplog.text
    assert forked.result(timeout=5) == "done"
    out = CliRunner().invoke(cli, ["fork", "pub", "--at", "2", "--id", "pub3", "--db", db])
    assert out.exit_code == 0, out.output
    assert "warning:" in out.output and "#4 trustctl.work" in out.output


# -- child ids and names ------------------------------------------------------------------


@pytest.mark.parametrize("squatter", ["another name", "another input", "no parent"])
def test_a_child_id_taken_by_another_workflow_is_refused(
    engine: durable.Engine, squatter: str
) -> None:
    if squatter == "another name":
        engine.start(publisher, workflow_id="p/call-1")
    elif squatter == "another input":
        engine.start(kid, 2, workflow_id="p/call-1")
    else:
        engine.start(kid, 1, workflow_id="p/call-1")
    handle = engine.start(kid_parent, workflow_id="p")
    with pytest.raises(WorkflowFailed) as failed:
        handle.result(timeout=5)
    assert isinstance(failed.value.__cause__, ChildConflict)


@durable.workflow(name="trustctl.kid")
def kid(n: int) -> str:
    return work(f"kid {n}")


@durable.workflow(name="trustctl.kid_parent")
def kid_parent() -> str:
    return kid(1)


def test_the_same_child_found_after_a_crash_is_taken(engine: durable.Engine) -> None:
    # As after a crash between creating the child and recording child.started.
    engine.store.create_workflow(*_child_row("p/call-1", "p"))
    assert engine.run(kid_parent, workflow_id="p") == "kid 1"


def _child_row(child_id: str, parent_id: str) -> tuple[object, ...]:
    from durable.runtime.rows import new_row, started_event

    row = new_row(kid, child_id, (1,), {}, 0.0, parent_id=parent_id)
    return row, [started_event(kid, row, (1,), {})]


@durable.workflow(name="trustctl.bad_name")
def bad_name(which: str) -> object:
    if which == "signal":
        return durable.wait_for_signal(None)  # type: ignore[arg-type]
    if which == "state-none":
        durable.state[None] = 1  # type: ignore[index]
    if which == "state-tuple":
        durable.state[("k", 1)] = 1  # type: ignore[index]
    if which == "event":
        durable.set_event(1, "x")  # type: ignore[arg-type]
    return None


@pytest.mark.parametrize("which", ["signal", "state-none", "state-tuple", "event"])
def test_a_non_str_name_in_a_workflow_fails_it_with_invalid_argument(
    engine: durable.Engine, which: str
) -> None:
    with pytest.raises(WorkflowFailed) as failed:
        engine.start(bad_name, which, workflow_id=f"bad-{which}").result(timeout=5)
    assert isinstance(failed.value.__cause__, InvalidArgument)


def test_a_non_str_signal_or_event_name_is_refused_by_the_engine(
    engine: durable.Engine,
) -> None:
    engine.start(waits, workflow_id="w")
    with pytest.raises(InvalidArgument):
        engine.send_signal("w", b"x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        engine.get_event("w", 1)  # type: ignore[arg-type]


def test_a_workflow_no_code_here_runs_waits_for_a_worker_and_a_cancel_does_not_wedge_it(
    db: str,
) -> None:
    from durable.runtime.registry import WORKFLOWS

    @durable.workflow(name="trustctl.elsewhere")
    def elsewhere() -> str:
        return "ran"

    with durable.Engine(db, workers=0) as client:
        client.start(elsewhere, workflow_id="e")
    del WORKFLOWS["trustctl.elsewhere"]  # this process no longer has its code
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        wait_until(lambda: engine.row("e").error is not None, what="set aside")
        row = engine.row("e")
        assert (row.status, row.owner) == (Status.WAITING, None)
        assert row.waiting == "a worker that imports its module"
        engine.cancel("e")
        wait_until(lambda: engine.row("e").owner is None and engine.row("e").wake_at
                   and engine.row("e").wake_at > time.time() + 30,
                   what="released with the cancel pending")
        assert engine.row("e").control == "cancel"
    WORKFLOWS["trustctl.elsewhere"] = elsewhere  # a worker with its code cancels it
    # An engine retries set-aside workflows when it opens.
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine, \
            pytest.raises(WorkflowCancelled):
        engine.handle("e").result(timeout=5)
