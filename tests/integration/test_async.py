"""Async workflows and steps: awaits, asyncio.gather, and deterministic replay."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable.errors import WorkflowFailed
from tests.conftest import wait_until
from tests.integration import _interrupt

barriers: dict[str, threading.Barrier] = {}


@durable.step(name="async.meet")
def meet(barrier: str, i: int) -> int:
    barriers[barrier].wait()  # blocks its thread; with the loop blocked, the other never comes
    return i


@durable.step(name="async.keyed")
async def keyed(i: int) -> str:
    await asyncio.sleep(0)
    return f"{i} {durable.step_key()}"


@durable.step(name="async.double")
def double(x: int) -> int:
    return 2 * x


@durable.workflow(name="async.meeting")
async def meeting(barrier: str) -> list[int]:
    return list(await asyncio.gather(meet(barrier, 0), meet(barrier, 1)))


@durable.workflow(name="async.pipeline")
async def pipeline(x: int) -> list[Any]:
    doubled = await double(x)
    keys = await asyncio.gather(*(keyed(i) for i in range(3)))
    return [doubled, *keys, await double(doubled)]


@durable.workflow(name="async.sync_meeting")
def sync_meeting(barrier: str) -> int:
    return int(meet(barrier, 1))


def test_an_async_workflow_awaits_steps_and_gathers_them(engine: durable.Engine) -> None:
    result = engine.run(pipeline, 5, workflow_id="pipe")
    assert result == [10, "0 pipe:2", "1 pipe:3", "2 pipe:4", 20]
    assert engine.replay("pipe") == result


def test_sync_steps_gathered_in_an_async_workflow_run_at_the_same_time(
    engine: durable.Engine,
) -> None:
    barriers["gathered"] = threading.Barrier(2, timeout=10)
    assert engine.run(meeting, "gathered") == [0, 1]


def test_async_and_sync_workflows_run_at_the_same_time_on_one_engine(
    engine: durable.Engine,
) -> None:
    barriers["mixed"] = threading.Barrier(3, timeout=10)  # two async steps, one sync one
    async_handle = engine.start(meeting, "mixed")
    sync_handle = engine.start(sync_meeting, "mixed")
    assert async_handle.result(timeout=20) == [0, 1]
    assert sync_handle.result(timeout=20) == 1


@durable.workflow(name="async.waiting")
async def waiting() -> list[Any]:
    first = await double(1)
    durable.sleep(0.05)
    payload = durable.wait_for_signal("go")
    return [first, payload, await double(payload)]


def test_an_async_workflow_sleeps_and_waits_for_a_signal_durably(
    engine: durable.Engine,
) -> None:
    handle = engine.start(waiting, workflow_id="waits")
    wait_until(lambda: handle.status() is durable.Status.WAITING and any(
        e.kind == "signal.waiting" for e in handle.history()), what="the signal wait")
    handle.signal("go", 21)
    assert handle.result(timeout=10) == [2, 21, 42]
    assert engine.replay("waits") == [2, 21, 42]


@durable.step(name="async.explode")
def explode(message: str) -> None:
    raise ValueError(message)


@durable.workflow(name="async.exploding")
async def exploding() -> list[Any]:
    outcomes = await asyncio.gather(double(1), explode("caught"), return_exceptions=True)
    await asyncio.gather(double(2), explode("uncaught"))
    return list(outcomes)


def test_a_failing_step_in_an_async_gather_fails_the_workflow_and_replays_so(
    engine: durable.Engine,
) -> None:
    with pytest.raises(WorkflowFailed) as failed:
        engine.run(exploding, workflow_id="boom")
    assert str(failed.value.__cause__) == "uncaught"
    with pytest.raises(WorkflowFailed):
        engine.replay("boom")


# -- coroutines whose steps complete in a chosen order ----------------------------------


#: See tests/integration/_interrupt.py.
plan: dict[str, Any] = {}


def completed_firsts() -> list[int]:
    return _interrupt.completed(plan, "async.first")


@durable.step(name="async.first")
def first(i: int) -> int:
    _interrupt.take_turn(plan, "async.first", i)
    return i


@durable.step(name="async.second")
async def second(i: int) -> int:
    return 10 * i + 1


@durable.step(name="async.tally")
def tally(values: list[int]) -> int:
    return sum(values)


async def branch(i: int) -> list[int]:
    # The call numbers of ``second`` depend on the order in which the ``first`` steps
    # complete: a replay must resume the coroutines in that same order.
    a = await first(i)
    b = await second(a)
    return [a, b, int(durable.randint(0, 10**6) >= 0)]


@durable.workflow(name="async.branches")
async def branches(n: int) -> list[Any]:
    results = await asyncio.gather(*(branch(i) for i in range(n)))
    return [*results, await tally([r[1] for r in results])]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_gathered_coroutines_replay_the_same_in_any_completion_order_and_after_an_interruption(
    tmp_path: Path, data: st.DataObject
) -> None:
    n = data.draw(st.integers(2, 5), label="coroutines")
    first_order = data.draw(st.permutations(range(n)), label="first run's completion order")
    cut = data.draw(st.integers(0, n), label="steps completed before the interruption")
    resumed = data.draw(st.permutations(first_order[cut:]), label="resumed run's order")
    expected: list[Any] = [[i, 10 * i + 1, 1] for i in range(n)]
    expected.append(sum(10 * i + 1 for i in range(n)))
    db = str(tmp_path / f"async-{n}-{first_order}-{cut}-{resumed}.db")

    def engine() -> durable.Engine:
        return durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.005)

    # Given a first run whose first steps complete in one order, interrupted after ``cut``
    plan.update(order=first_order, cut=cut if cut < n else None, workflow_id="branches",
                ran=[], interrupted=[])
    first_engine = plan["engine"] = engine()  # the steps watch it as soon as it opens
    with first_engine:
        handle = first_engine.start(branches, n, workflow_id="branches")
        if cut < n:
            wait_until(lambda: len(plan["interrupted"]) == n - cut, what="the interruptions")
        else:
            assert handle.result(timeout=10) == expected
    assert plan["ran"] == first_order[:cut]

    # When a new engine resumes it and the remaining first steps complete in another order
    plan.update(order=[*first_order[:cut], *resumed], cut=None, ran=[])
    second_engine = plan["engine"] = engine()
    with second_engine:
        assert second_engine.handle("branches").result(timeout=10) == expected
        # Then each first step ran once, in the order chosen, and a replay returns the same
        # result without running any
        assert plan["ran"] == (resumed if cut < n else [])
        assert completed_firsts() == [i + 1 for i in plan["order"]]
        assert second_engine.replay("branches") == expected
        assert plan["ran"] == (resumed if cut < n else [])
