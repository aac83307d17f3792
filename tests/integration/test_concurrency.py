"""Parallel steps inside one workflow: submit, gather, and the order they complete in."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable.errors import NotInWorkflow, WorkflowFailed
from tests.conftest import wait_until
from tests.integration import _interrupt

# -- steps that meet -------------------------------------------------------------------

barriers: dict[str, threading.Barrier] = {}


@durable.step(name="conc.meet")
def meet(barrier: str, i: int) -> str:
    # Every party waits for all the others: run one after another, the first one would
    # wait alone until the timeout breaks the barrier.
    barriers[barrier].wait()
    return f"{i} {durable.step_key()} {durable.workflow_id()}"


@durable.workflow(name="conc.meeting")
def meeting(barrier: str, parties: int) -> list[str]:
    return durable.gather(*(durable.submit(meet, barrier, i) for i in range(parties)))


def test_submitted_steps_run_at_the_same_time(engine: durable.Engine) -> None:
    barriers["four"] = threading.Barrier(4, timeout=10)
    results = engine.run(meeting, "four", 4, workflow_id="meet")
    assert [r.split()[0] for r in results] == ["0", "1", "2", "3"]


def test_submitted_steps_see_their_workflow_and_their_own_step_key(
    engine: durable.Engine,
) -> None:
    barriers["keys"] = threading.Barrier(3, timeout=10)
    results = engine.run(meeting, "keys", 3, workflow_id="order:7")  # a ":" in the id too
    assert results == [f"{i} order:7:{i + 1} order:7" for i in range(3)]


def test_a_finished_parallel_workflow_replays_without_running_a_step(
    engine: durable.Engine,
) -> None:
    barriers["replay"] = threading.Barrier(4, timeout=10)
    first = engine.run(meeting, "replay", 4, workflow_id="again")
    barriers["replay"] = threading.Barrier(99, timeout=0.01)  # a step that ran would fail
    assert engine.replay("again") == first


def test_submit_outside_a_workflow_is_refused() -> None:
    with pytest.raises(NotInWorkflow):
        durable.submit(meet, "none", 0)


# -- steps that complete in a chosen order ---------------------------------------------


#: See tests/integration/_interrupt.py.
plan: dict[str, Any] = {}


def completed() -> list[int]:
    return _interrupt.completed(plan, "conc.in_turn")


@durable.step(name="conc.in_turn")
def in_turn(i: int) -> int:
    _interrupt.take_turn(plan, "conc.in_turn", i)
    return 10 * i + 1


@durable.step(name="conc.total")
def total(values: list[int]) -> int:
    return sum(values)


@durable.workflow(name="conc.fan_in_turn")
def fan_in_turn(n: int) -> list[int]:
    results: list[int] = durable.gather(*(durable.submit(in_turn, i) for i in range(n)))
    return [*results, total(results)]


def _engine(db: str) -> durable.Engine:
    return durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.005)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_parallel_steps_end_the_same_in_any_completion_order_and_after_an_interruption(
    tmp_path: Path, data: st.DataObject
) -> None:
    n = data.draw(st.integers(2, 5), label="steps")
    first_order = data.draw(st.permutations(range(n)), label="first run's completion order")
    cut = data.draw(st.integers(0, n), label="steps completed before the interruption")
    resumed = data.draw(st.permutations(first_order[cut:]), label="resumed run's order")
    expected = [10 * i + 1 for i in range(n)]
    expected.append(sum(expected))
    db = str(tmp_path / f"order-{n}-{first_order}-{cut}-{resumed}.db")

    # Given a first run whose steps complete in one order, interrupted after ``cut`` of them
    plan.update(order=first_order, cut=cut if cut < n else None, workflow_id="fan", ran=[],
                interrupted=[])
    engine = plan["engine"] = _engine(db)  # the steps watch it as soon as it opens
    with engine:
        handle = engine.start(fan_in_turn, n, workflow_id="fan")
        if cut < n:
            wait_until(lambda: len(plan["interrupted"]) == n - cut, what="the interruptions")
        else:
            assert handle.result(timeout=10) == expected
    assert plan["ran"] == first_order[:cut]

    # When a new engine resumes it and the remaining steps complete in another order
    plan.update(order=[*first_order[:cut], *resumed], cut=None, ran=[])
    engine = plan["engine"] = _engine(db)
    with engine:
        assert engine.handle("fan").result(timeout=10) == expected
        # Then each step ran once, the log holds the completions in the order they
        # happened, and a replay returns the same result without running any step
        assert plan["ran"] == (resumed if cut < n else [])
        assert completed() == [i + 1 for i in plan["order"]]
        plan["ran"] = []
        assert engine.replay("fan") == expected
        assert plan["ran"] == []


# -- failures --------------------------------------------------------------------------


def failures(engine: durable.Engine, workflow_id: str) -> int:
    return sum(e.kind == "step.failed" for e in engine.history(workflow_id))


watch: dict[str, Any] = {}
settled: list[str] = []


@durable.step(name="conc.fails_after")
def fails_after(earlier_failures: int, message: str) -> None:
    wait_until(lambda: failures(watch["engine"], watch["workflow_id"]) >= earlier_failures)
    raise ValueError(message)


@durable.step(name="conc.succeeds_after")
def succeeds_after(earlier_failures: int) -> str:
    wait_until(lambda: failures(watch["engine"], watch["workflow_id"]) >= earlier_failures)
    settled.append("slowest")
    return "ok"


@durable.step(name="conc.mark")
def mark() -> None:
    settled.append("after gather")


@durable.workflow(name="conc.failing_gather")
def failing_gather() -> str:
    slowest = durable.submit(succeeds_after, 2)  # completes last of the three
    second = durable.submit(fails_after, 1, "second argument")  # fails second
    third = durable.submit(fails_after, 0, "third argument")  # fails first
    try:
        durable.gather(slowest, second, third)
    except ValueError as error:
        mark()
        return str(error)
    return "no error"


@durable.workflow(name="conc.uncaught_gather")
def uncaught_gather() -> None:
    durable.gather(durable.submit(fails_after, 1, "second argument"),
                   durable.submit(fails_after, 0, "third argument"))


def test_gather_raises_the_first_failure_in_argument_order_once_all_have_settled(
    engine: durable.Engine,
) -> None:
    watch.update(engine=engine, workflow_id="failing")
    settled.clear()
    assert engine.run(failing_gather, workflow_id="failing") == "second argument"
    assert settled == ["slowest", "after gather"]
    kinds = [(e.call, e.kind) for e in engine.history("failing") if e.call in (1, 2, 3)]
    assert kinds == [(3, "step.failed"), (2, "step.failed"), (1, "step.completed")]
    assert engine.replay("failing") == "second argument"


def test_a_failed_gather_fails_the_workflow_with_the_first_failure_in_argument_order(
    engine: durable.Engine,
) -> None:
    watch.update(engine=engine, workflow_id="uncaught")
    with pytest.raises(WorkflowFailed) as failed:
        engine.run(uncaught_gather, workflow_id="uncaught")
    assert isinstance(failed.value.__cause__, ValueError)
    assert str(failed.value.__cause__) == "second argument"


# -- the engine's bound on running workflows -------------------------------------------

running: list[int] = []
most_running = [0]
running_lock = threading.Lock()
release = threading.Event()


@durable.step(name="conc.occupy")
def occupy() -> None:
    with running_lock:
        running.append(1)
        most_running[0] = max(most_running[0], len(running))
    release.wait(10)
    with running_lock:
        running.pop()


@durable.workflow(name="conc.occupied")
def occupied() -> str:
    occupy()
    return "done"


def test_an_engine_runs_at_most_its_number_of_workers_at_once(db: str) -> None:
    most_running[0] = 0
    release.clear()
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        handles = [engine.start(occupied) for _ in range(6)]
        wait_until(lambda: len(running) == 2, what="two workflows running")
        assert sum(h.status() is durable.Status.RUNNING for h in handles) == 2
        release.set()
        assert [h.result(timeout=10) for h in handles] == ["done"] * 6
    assert most_running[0] == 2


# -- a workflow gives itself up only once the steps beside it are recorded ----------------

side: dict[str, Any] = {}


@durable.step(name="conc.slow_sibling")
def slow_sibling(label: str) -> str:
    side["runs"].append(label)
    side["started"].set()
    side["release"].wait(10)
    return label


@durable.step(name="conc.flaky", retry=durable.RetryPolicy(max_attempts=2, initial_delay=1.5))
def flaky_once() -> str:
    side["tries"].append(1)
    side["started"].wait(10)
    if len(side["tries"]) == 1:
        raise ConnectionError("once")
    return "ok"


@durable.workflow(name="conc.sibling_and_flaky")
def sibling_and_flaky() -> list[str]:
    return durable.gather(durable.submit(flaky_once), durable.submit(slow_sibling, "s"))


@durable.workflow(name="conc.siblings_then_more")
def siblings_then_more() -> list[str]:
    first = durable.gather(*(durable.submit(slow_sibling, f"s{i}") for i in range(3)))
    return [*first, slow_sibling("after")]


def _reset_side(release: bool) -> None:
    side.update(runs=[], tries=[], started=threading.Event(), release=threading.Event())
    if release:
        side["release"].set()


def test_a_long_retry_beside_a_running_sibling_does_not_run_the_sibling_again(
    engine: durable.Engine,
) -> None:
    _reset_side(release=False)
    handle = engine.start(sibling_and_flaky, workflow_id="long-retry")
    wait_until(lambda: side["tries"] == [1], what="the first attempt")
    # The attempt failed with a 1.5 s backoff: the workflow waits for its sibling, then
    # suspends RETRYING without holding a thread; the sibling's result is kept.
    side["release"].set()
    assert handle.result(timeout=10) == ["ok", "s"]
    assert side["runs"] == ["s"]
    kinds = [e.kind for e in handle.history() if e.name == "conc.flaky"]
    assert kinds == ["step.retry", "step.completed"]


def test_a_pause_while_parallel_steps_run_keeps_their_results_and_runs_nothing_more(
    engine: durable.Engine,
) -> None:
    _reset_side(release=False)
    handle = engine.start(siblings_then_more, workflow_id="pause-parallel")
    wait_until(lambda: len(side["runs"]) == 3, what="three siblings running")
    engine.pause("pause-parallel")
    side["release"].set()
    wait_until(lambda: handle.status() == durable.Status.PAUSED, what="the pause")
    assert sorted(side["runs"]) == ["s0", "s1", "s2"]  # "after" did not start
    engine.resume("pause-parallel")
    assert handle.result(timeout=10) == ["s0", "s1", "s2", "after"]
    assert sorted(side["runs"]) == ["after", "s0", "s1", "s2"]  # none ran twice
