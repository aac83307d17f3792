"""Running DAGs on a real engine: the contract example, parallelism, failure propagation,
retries, timeouts, re-runs and replay."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import durable
from durable.dag import Task, TaskState, Workflow
from durable.errors import DagRunFailed, InvalidArgument, TaskResultUnavailable, TaskTimeout
from tests.conftest import wait_until


def test_the_contract_example_runs_verbatim(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_DB", str(tmp_path / "contract.db"))

    workflow = Workflow(name="etl")            # optional engine=...; default db as the CLI's
    task1 = Task(name="task1", func=lambda: "result1")
    task2 = Task(name="task2", func=lambda: f"processed {workflow.get_task_result('task1')}",
                 dependencies=["task1"], max_retries=3, retry_delay=1.0, timeout=5.0)
    workflow.add_task(task1); workflow.add_task(task2)  # noqa: E702
    results = workflow.run()                   # {"task1": "result1", "task2": "processed result1"}
    task2.state                                # TaskState.SUCCESS  # noqa: B018

    assert results == {"task1": "result1", "task2": "processed result1"}
    assert task2.state == TaskState.SUCCESS
    assert (tmp_path / "contract.db").exists()


def test_without_an_engine_the_run_uses_durable_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DURABLE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    workflow = Workflow(name="local")
    workflow.add_task(Task(name="only", func=lambda: 1))
    assert workflow.run(run_id="local-1") == {"only": 1}
    with durable.Engine(str(tmp_path / "durable.db"), workers=0) as engine:
        assert engine.handle("local-1").status() == durable.Status.SUCCESS


def test_a_dag_run_is_a_durable_workflow_whose_steps_are_its_tasks(
    engine: durable.Engine,
) -> None:
    workflow = Workflow("pipe", engine=engine)
    workflow.add_task(Task(name="extract", func=lambda: [1, 2]))
    workflow.add_task(Task(name="load", func=lambda extract: len(extract),
                           dependencies=["extract"]))
    workflow.run(run_id="pipe-1")
    steps = [e.name for e in engine.history("pipe-1") if e.kind == "step.completed"]
    assert "dag:pipe/extract" in steps and "dag:pipe/load" in steps
    assert engine.handle("pipe-1").status() == durable.Status.SUCCESS


def test_independent_tasks_run_in_parallel(engine: durable.Engine) -> None:
    both_running = threading.Barrier(2, timeout=10)  # a sequential run would break it
    workflow = Workflow("parallel", engine=engine)
    workflow.add_task(Task(name="a", func=lambda: both_running.wait() is not None))
    workflow.add_task(Task(name="b", func=lambda: both_running.wait() is not None))
    assert workflow.run() == {"a": True, "b": True}


def test_a_failure_skips_its_dependents_while_an_independent_branch_still_runs(
    engine: durable.Engine,
) -> None:
    def extract() -> None:
        raise ValueError("source offline")

    workflow = Workflow("branches", engine=engine)
    workflow.add_task(Task(name="extract", func=extract))
    workflow.add_task(Task(name="transform", func=lambda extract: extract,
                           dependencies=["extract"]))
    workflow.add_task(Task(name="load", func=lambda transform: transform,
                           dependencies=["transform"]))
    workflow.add_task(Task(name="metrics", func=lambda: 7))
    workflow.add_task(Task(name="publish", func=lambda metrics: metrics + 1,
                           dependencies=["metrics"]))

    with pytest.raises(DagRunFailed) as caught:
        workflow.run(run_id="branches-1")

    assert caught.value.failed == {"extract": "ValueError: source offline"}
    assert caught.value.skipped == ["transform", "load"]
    assert "extract: ValueError: source offline" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)
    assert workflow["extract"].state is TaskState.FAILURE
    assert isinstance(workflow["extract"].error, ValueError)
    assert workflow["transform"].state is TaskState.SKIPPED
    assert workflow["transform"].skip_reason == "upstream task 'extract' failed"
    assert workflow["load"].skip_reason == "upstream task 'extract' failed (via 'transform')"
    assert workflow["publish"].state is TaskState.SUCCESS
    assert workflow.results == {"metrics": 7, "publish": 8}
    assert "source offline" in str(workflow.report())


def test_a_failing_task_is_retried_until_it_succeeds(engine: durable.Engine) -> None:
    attempts: list[int] = []
    retried: list[tuple[str, str, int]] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    workflow = Workflow("retry", engine=engine,
                        on_task_retry=lambda t, e, n: retried.append((t.name, str(e), n)))
    task = workflow.add_task(Task(name="flaky", func=flaky, max_retries=3, retry_delay=0.01))
    assert workflow.run(run_id="retry-1") == {"flaky": "ok"}
    assert len(attempts) == 3
    assert task.attempts == 3 and task.state is TaskState.SUCCESS
    assert retried == [("flaky", "attempt 1", 1), ("flaky", "attempt 2", 2)]
    kinds = [e.kind for e in engine.history("retry-1") if e.name == "dag:retry/flaky"]
    assert kinds == ["step.retry", "step.retry", "step.completed"]


def test_a_task_fails_once_its_retries_are_spent(engine: durable.Engine) -> None:
    attempts: list[int] = []

    def broken() -> None:
        attempts.append(1)
        raise RuntimeError(f"failure {len(attempts)}")

    workflow = Workflow("spent", engine=engine)
    workflow.add_task(Task(name="broken", func=broken, max_retries=2, retry_delay=0))
    with pytest.raises(DagRunFailed, match="failure 3"):
        workflow.run()
    assert len(attempts) == 3
    assert workflow["broken"].state is TaskState.FAILURE


def test_an_attempt_that_runs_past_its_timeout_fails_and_is_retried(
    engine: durable.Engine,
) -> None:
    release = threading.Event()
    started: list[int] = []

    def hangs() -> None:
        started.append(1)
        release.wait(10)

    workflow = Workflow("timeout", engine=engine)
    task = workflow.add_task(Task(name="hangs", func=hangs, timeout=0.1, max_retries=1,
                                  retry_delay=0))
    try:
        with pytest.raises(DagRunFailed, match="TaskTimeout"):
            workflow.run()
    finally:
        release.set()
    assert len(started) == 2
    assert isinstance(task.error, TaskTimeout)
    assert "ran past its timeout of 0.1 s" in str(task.error)


def test_running_a_failed_run_again_reruns_only_what_did_not_succeed(
    engine: durable.Engine,
) -> None:
    runs: list[str] = []
    broken = {"yes": True}

    def make(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def run() -> str:
            runs.append(name)
            if fail and broken["yes"]:
                raise OSError("disk full")
            return name
        return run

    workflow = Workflow("rerun", engine=engine)
    workflow.add_task(Task(name="a", func=make("a")))
    workflow.add_task(Task(name="b", func=make("b", fail=True), dependencies=["a"]))
    workflow.add_task(Task(name="c", func=make("c"), dependencies=["b"]))
    with pytest.raises(DagRunFailed):
        workflow.run(run_id="rerun-1")
    assert runs == ["a", "b"]

    broken["yes"] = False
    assert workflow.run(run_id="rerun-1") == {"a": "a", "b": "b", "c": "c"}
    assert runs == ["a", "b", "b", "c"]
    assert workflow["a"].state is TaskState.SUCCESS
    assert "kept from an earlier attempt" in str(workflow.report())


def test_running_a_finished_run_again_returns_its_results_without_running_anything(
    engine: durable.Engine,
) -> None:
    runs: list[int] = []
    workflow = Workflow("again", engine=engine)
    workflow.add_task(Task(name="once", func=lambda: runs.append(1) or len(runs)))
    first = workflow.run(run_id="again-1")
    assert workflow.run(run_id="again-1") == first == {"once": 1}
    assert runs == [1]
    assert workflow["once"].state is TaskState.SUCCESS


def test_a_run_id_of_another_dag_is_refused(engine: durable.Engine) -> None:
    first = Workflow("first", engine=engine)
    first.add_task(Task(name="a", func=lambda: 1))
    first.run(run_id="shared")
    second = Workflow("second", engine=engine)
    second.add_task(Task(name="a", func=lambda: 2))
    with pytest.raises(InvalidArgument, match="already belongs to 'first'"):
        second.run(run_id="shared")


def test_replaying_a_finished_dag_run_runs_no_task(engine: durable.Engine) -> None:
    runs: list[str] = []
    workflow = Workflow("replayed", engine=engine, max_workers=3)
    for name in "abcde":
        workflow.add_task(Task(name=name, func=lambda n=name: runs.append(n) or n,
                               dependencies=[] if name in "ab" else ["a", "b"]))
    results = workflow.run(run_id="replayed-1")
    assert sorted(runs) == list("abcde")
    assert engine.replay("replayed-1")["results"] == results
    assert sorted(runs) == list("abcde")


def test_task_results_are_readable_inside_tasks_and_after_the_run(
    engine: durable.Engine,
) -> None:
    workflow = Workflow("results", engine=engine)
    workflow.add_task(Task(name="a", func=lambda: 20))
    workflow.add_task(Task(name="b", func=lambda: workflow.get_task_result("a") + 1,
                           dependencies=["a"]))
    workflow.run()
    assert workflow.get_task_result("b") == 21
    with pytest.raises(TaskResultUnavailable, match="no such task"):
        workflow.get_task_result("zzz")


def test_reading_a_result_that_does_not_exist_fails_the_reading_task(
    engine: durable.Engine,
) -> None:
    workflow = Workflow("unavailable", engine=engine)
    workflow.add_task(Task(name="a", func=lambda: workflow.get_task_result("b")))
    workflow.add_task(Task(name="b", func=lambda: 1, dependencies=["a"]))
    with pytest.raises(DagRunFailed, match="TaskResultUnavailable"):
        workflow.run()


def test_an_async_task_function_is_awaited(engine: durable.Engine) -> None:
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 3

    workflow = Workflow("async", engine=engine)
    workflow.add_task(Task(name="fetch", func=fetch))
    assert workflow.run() == {"fetch": 3}


def test_the_run_never_runs_more_than_max_workers_tasks_at_once(
    engine: durable.Engine,
) -> None:
    lock = threading.Lock()
    running = {"now": 0, "most": 0}

    def work() -> None:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        threading.Event().wait(0.02)  # hold the slot long enough for others to try
        with lock:
            running["now"] -= 1

    workflow = Workflow("bounded", engine=engine)
    for i in range(8):
        workflow.add_task(Task(name=f"t{i}", func=work))
    workflow.run(max_workers=2)
    assert running["most"] == 2


def test_an_invalid_dag_runs_nothing(engine: durable.Engine) -> None:
    runs: list[int] = []
    workflow = Workflow("invalid", engine=engine)
    workflow.add_task(Task(name="a", func=lambda: runs.append(1), dependencies=["missing"]))
    with pytest.raises(Exception, match="'missing', which is not defined"):
        workflow.run(run_id="invalid-1")
    assert runs == []
    assert engine.list_workflows(name="durable.dag.run") == []


def test_a_paused_run_resumes_by_replay_without_running_finished_tasks_again(
    engine: durable.Engine,
) -> None:
    runs: list[str] = []
    release = threading.Event()

    def make(name: str, gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
        def run() -> str:
            runs.append(name)
            if gate is not None:
                gate.wait(10)
            return name
        return run

    workflow = Workflow("paused", engine=engine)
    workflow.add_task(Task(name="a", func=make("a")))
    workflow.add_task(Task(name="b", func=make("b", release), dependencies=["a"]))
    workflow.add_task(Task(name="c", func=make("c"), dependencies=["b"]))
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(workflow.run(run_id="paused-1")))
    runner.start()
    wait_until(lambda: "b" in runs, what="task b running")
    engine.pause("paused-1")
    release.set()
    wait_until(lambda: engine.handle("paused-1").status() == durable.Status.PAUSED,
               what="the run paused")
    assert runs == ["a", "b"]

    engine.resume("paused-1")
    runner.join(10)
    assert outcome == {"a": "a", "b": "b", "c": "c"}
    assert runs == ["a", "b", "c"]


@pytest.mark.slow
def test_a_long_retry_delay_does_not_run_a_parallel_sibling_twice(
    engine: durable.Engine,
) -> None:
    runs: list[str] = []
    tries: list[int] = []
    sibling_started = threading.Event()

    def flaky() -> str:
        tries.append(1)
        sibling_started.wait(5)
        if len(tries) == 1:
            raise ConnectionError("once")
        return "ok"

    def sibling() -> str:
        runs.append("sibling")
        sibling_started.set()
        threading.Event().wait(0.3)  # still running when flaky's retry is scheduled
        return "done"

    workflow = Workflow("long-retry", engine=engine)
    workflow.add_task(Task(name="flaky", func=flaky, max_retries=1, retry_delay=1.2))
    workflow.add_task(Task(name="sibling", func=sibling))
    assert workflow.run() == {"flaky": "ok", "sibling": "done"}
    assert runs == ["sibling"]
