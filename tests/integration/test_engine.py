"""The engine on a real SQLite file: results, failures, replay, divergence, bad input."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import durable
from durable.errors import (
    DatabaseError,
    NonDeterminismError,
    RecoveryLimitExceeded,
    SerializationError,
    StepTimeout,
    WorkflowConflict,
    WorkflowFailed,
    WorkflowNotFound,
)
from durable.runtime.registry import STEPS as _steps
from durable.runtime.registry import WORKFLOWS as _workflows
from tests.conftest import execute_sql, wait_until

calls: list[str] = []


@durable.step
def double(x: int) -> int:
    calls.append(f"double {x}")
    return 2 * x


@durable.step
def explode(message: str) -> None:
    calls.append("explode")
    raise ValueError(message)


@durable.workflow
def pipeline(x: int) -> int:
    return double(double(x)) + 1


@durable.workflow
def failing() -> None:
    explode("no luck")


@durable.workflow
def catching() -> str:
    try:
        explode("caught")
    except ValueError as error:
        return f"handled {error}"
    return "unreachable"


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def redeploy(name: str) -> None:
    """Forget a workflow's definition, as a new process running changed code would."""
    del _workflows[name]


def test_run_returns_the_workflow_result(engine: durable.Engine) -> None:
    assert engine.run(pipeline, 5) == 21
    assert calls == ["double 5", "double 10"]


def test_a_direct_call_runs_on_the_open_engine(engine: durable.Engine) -> None:
    assert pipeline(1) == 5


def test_starting_an_existing_id_returns_the_existing_workflow(engine: durable.Engine) -> None:
    first = engine.start(pipeline, 1, workflow_id="same")
    second = engine.start(pipeline, 1, workflow_id="same")
    assert first.result(timeout=5) == second.result(timeout=5) == 5
    assert calls == ["double 1", "double 2"]
    with pytest.raises(WorkflowConflict, match="same"):
        engine.start(failing, workflow_id="same")


def test_an_uncaught_step_error_fails_the_workflow_with_it_as_cause(
    engine: durable.Engine,
) -> None:
    handle = engine.start(failing, workflow_id="f")
    with pytest.raises(WorkflowFailed, match="no luck") as failed:
        handle.result(timeout=5)
    assert isinstance(failed.value.__cause__, ValueError)
    assert handle.status() is durable.Status.FAILURE


def test_a_step_error_is_catchable_in_the_workflow(engine: durable.Engine) -> None:
    assert engine.run(catching) == "handled caught"


def test_replay_of_a_finished_workflow_runs_no_step(engine: durable.Engine) -> None:
    engine.run(pipeline, 3, workflow_id="p")
    calls.clear()
    assert engine.replay("p") == 13
    assert engine.replay("p") == 13
    assert calls == []


def test_replay_reproduces_a_recorded_failure(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowFailed):
        engine.run(failing, workflow_id="f")
    calls.clear()
    with pytest.raises(WorkflowFailed, match="no luck"):
        engine.replay("f")
    assert calls == []


def test_changed_code_gives_a_divergence_naming_both_calls(engine: durable.Engine) -> None:
    @durable.step(name="test.charge")
    def charge(cents: int) -> str:
        return "receipt"

    @durable.step(name="test.audit")
    def audit() -> None:
        return None

    @durable.workflow(name="test.changing")
    def changing() -> str:
        return charge(100)

    engine.run(changing, workflow_id="c")

    redeploy("test.changing")

    @durable.workflow(name="test.changing")
    def changing_v2() -> str:  # a call inserted before the recorded one
        audit()
        return charge(100)

    with pytest.raises(NonDeterminismError) as diverged:
        engine.replay("c")
    message = str(diverged.value)
    assert "test.charge(100)" in message and "test.audit()" in message
    assert "inserted" in message
    assert "test_engine.py" in message  # where the new call is
    assert diverged.value.call == 1


def test_other_arguments_are_a_divergence(engine: durable.Engine) -> None:
    @durable.workflow(name="test.args")
    def args_v1() -> int:
        return double(1)

    engine.run(args_v1, workflow_id="a")

    redeploy("test.args")

    @durable.workflow(name="test.args")
    def args_v2() -> int:
        return double(2)

    with pytest.raises(NonDeterminismError, match="other arguments"):
        engine.replay("a")


def test_a_removed_trailing_call_is_a_divergence(engine: durable.Engine) -> None:
    @durable.workflow(name="test.trailing")
    def trailing_v1() -> int:
        double(1)
        return double(2)

    engine.run(trailing_v1, workflow_id="t")

    redeploy("test.trailing")

    @durable.workflow(name="test.trailing")
    def trailing_v2() -> int:
        return double(1)

    with pytest.raises(NonDeterminismError, match="removed"):
        engine.replay("t")


def test_a_diverged_running_workflow_is_set_aside_not_failed(engine: durable.Engine) -> None:
    gate = threading.Event()

    @durable.step(name="test.gate")
    def wait_gate() -> None:
        gate.wait(10)

    @durable.workflow(name="test.live")
    def live_v1() -> str:
        double(1)
        durable.sleep(0.3)
        return "v1"

    handle = engine.start(live_v1, workflow_id="live")
    wait_until(lambda: handle.status() is durable.Status.WAITING)

    redeploy("test.live")

    @durable.workflow(name="test.live")
    def live_v2() -> str:
        double(7)
        return "v2"

    with pytest.raises(NonDeterminismError):
        handle.result(timeout=5)
    assert not handle.status().finished  # resumable once the code is fixed
    del wait_gate


def test_unknown_workflow_ids_are_a_clear_error(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowNotFound, match="nope"):
        engine.handle("nope")


def test_step_timeout_raises_in_the_workflow(engine: durable.Engine) -> None:
    release = threading.Event()

    @durable.step(name="test.slow", timeout=0.1)
    def slow() -> None:
        release.wait(5)

    @durable.workflow(name="test.timing_out")
    def timing_out() -> str:
        try:
            slow()
        except StepTimeout as error:
            return f"timed out: {error.name}"
        return "finished"

    try:
        assert engine.run(timing_out) == "timed out: test.slow"
    finally:
        release.set()


def test_an_unserializable_argument_is_refused_and_nothing_is_written(
    engine: durable.Engine,
) -> None:
    with pytest.raises(SerializationError, match="lock"):
        engine.start(pipeline, threading.Lock(), workflow_id="bad")
    with pytest.raises(WorkflowNotFound):
        engine.handle("bad")


def test_an_unserializable_step_result_fails_that_call_clearly(engine: durable.Engine) -> None:
    @durable.step(name="test.lock")
    def make_lock() -> object:
        return threading.Lock()

    @durable.workflow(name="test.locking")
    def locking() -> None:
        make_lock()

    with pytest.raises(WorkflowFailed) as failed:
        engine.run(locking, workflow_id="lk")
    cause = failed.value.__cause__
    assert isinstance(cause, SerializationError)
    assert "'lk'" in str(cause) and "call #1" in str(cause) and "test.lock" in str(cause)


def test_events_cannot_be_updated_or_deleted(engine: durable.Engine, db: str) -> None:
    engine.run(pipeline, 1, workflow_id="p")
    with pytest.raises(Exception, match="append-only: UPDATE refused"):
        execute_sql(db, "UPDATE events SET kind = 'x'")
    with pytest.raises(Exception, match="append-only: DELETE refused"):
        execute_sql(db, "DELETE FROM events")
    assert execute_sql(db, "SELECT COUNT(*) FROM events")[0][0] > 0


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(DatabaseError, match="notes.db"):
        durable.Engine(str(path))
    assert path.read_bytes() == content
    assert not (tmp_path / "notes.db-wal").exists()


def test_a_corrupt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    with durable.Engine(str(path)) as engine:
        engine.run(pipeline, 1)
    data = bytearray(path.read_bytes())
    data[0:16] = b"garbage garbage!"
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError, match="corrupt.db"):
        durable.Engine(str(path))
    assert path.read_bytes() == bytes(data)


def test_history_lists_every_event_in_order(engine: durable.Engine) -> None:
    engine.run(pipeline, 2, workflow_id="h")
    kinds = [(e.call, e.kind) for e in engine.history("h")]
    assert kinds == [(0, "workflow.started"), (1, "step.completed"), (2, "step.completed"),
                     (0, "workflow.completed")]


def test_list_workflows_filters_by_status(engine: durable.Engine) -> None:
    engine.run(pipeline, 1, workflow_id="ok")
    with pytest.raises(WorkflowFailed):
        engine.run(failing, workflow_id="bad")
    assert [w.workflow_id for w in engine.list_workflows(status="FAILURE")] == ["bad"]
    assert {w.workflow_id for w in engine.list_workflows()} == {"ok", "bad"}


def test_fork_keeps_the_first_calls_and_runs_the_rest(engine: durable.Engine) -> None:
    engine.run(pipeline, 3, workflow_id="orig")
    calls.clear()
    forked = engine.fork("orig", at=1)
    assert forked.result(timeout=5) == 13
    assert calls == ["double 6"]


def test_duplicate_step_names_are_a_clear_error() -> None:
    @durable.step(name="test.dup")
    def one() -> None: ...

    with pytest.raises(durable.errors.DuplicateName, match="test.dup"):
        @durable.step(name="test.dup")
        def two() -> None: ...

    del _steps["test.dup"]


@durable.step
def exits() -> None:
    calls.append("exits")
    raise SystemExit(3)  # sys.exit() cannot end the process from a worker thread


@durable.workflow
def exiting_step() -> None:
    exits()


@durable.workflow
def interrupted_body() -> None:
    double(1)
    raise KeyboardInterrupt


@pytest.mark.parametrize("wf, cause", [(exiting_step, SystemExit),
                                       (interrupted_body, KeyboardInterrupt)])
def test_a_base_exception_from_user_code_fails_the_workflow_instead_of_stranding_it(
    engine: durable.Engine, wf: durable.Workflow, cause: type[BaseException]
) -> None:
    handle = engine.start(wf, workflow_id="x")
    with pytest.raises(WorkflowFailed, match=cause.__name__) as failed:
        handle.result(timeout=5)
    assert isinstance(failed.value.__cause__, cause)
    assert handle.status() is durable.Status.FAILURE
    # Replay reproduces the failure as an error, and runs nothing.
    ran = list(calls)
    with pytest.raises(WorkflowFailed, match=cause.__name__):
        engine.replay("x")
    assert calls == ran


bodies: list[str] = []


@durable.workflow(name="engine.flaky_finish")
def flaky_finish() -> str:
    bodies.append("ran")
    return "done"


@pytest.mark.parametrize("failures", [1, 100])
def test_an_error_inside_the_engine_is_retried_like_a_crash_and_bounded(
    db: str, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    import durable.runtime.run

    original = durable.runtime.run.finish
    left = [failures]

    def broken(ctx: Any, status: durable.Status, value: Any) -> None:
        if status is durable.Status.SUCCESS and left[0] > 0:
            left[0] -= 1
            raise RuntimeError("a bug in the engine")
        original(ctx, status, value)

    monkeypatch.setattr(durable.runtime.run, "finish", broken)
    bodies.clear()
    with durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.01,
                        max_recoveries=1) as engine:
        handle = engine.start(flaky_finish, workflow_id="e")
        if failures == 1:  # a passing fault: the next run finishes it
            assert handle.result(timeout=10) == "done"
            assert len(bodies) == 2
        else:  # a lasting one: stopped after max_recoveries, not run in a hot loop
            with pytest.raises(WorkflowFailed, match="recovered 2 times") as failed:
                handle.result(timeout=10)
            assert isinstance(failed.value.__cause__, RecoveryLimitExceeded)
            assert len(bodies) == 2
