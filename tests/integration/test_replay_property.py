"""Property: a random workflow program interrupted at random points ends with the same
result as an uninterrupted run, and replays to it without running any step."""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from tests.conftest import wait_until
from tests.integration._interrupt import Interrupted

effects: collections.Counter[str] = collections.Counter()
crash_at: set[int] = set()
executions = [0]
interrupted = threading.Event()


@durable.step(name="prop.work")
def work(key: str, value: int) -> int:
    executions[0] += 1
    effects[key] += 1
    if executions[0] in crash_at:
        interrupted.set()
        raise Interrupted()
    return value * 3 + 1


@durable.workflow(name="prop.program")
def program(ops: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for index, (op, arg) in enumerate(ops):
        if op == "step":
            out.append(work(f"{index}", arg))
        elif op == "parallel":
            futures = [durable.submit(work, f"{index}.{i}", arg + i) for i in range(3)]
            out.append(durable.gather(*futures))
        elif op == "random":
            out.append(durable.random())
        elif op == "uuid":
            out.append(str(durable.uuid4()))
        elif op == "state":
            durable.state[f"k{arg % 3}"] = arg
            out.append(dict(durable.state))
        elif op == "sleep":
            durable.sleep(0)
            out.append("slept")
    return out


operation = st.one_of(
    st.tuples(st.just("step"), st.integers(0, 100)),
    st.tuples(st.just("parallel"), st.integers(0, 100)),
    st.tuples(st.sampled_from(["random", "uuid", "sleep"]), st.just(0)),
    st.tuples(st.just("state"), st.integers(0, 100)),
).map(list)


def deterministic_part(ops: list[list[Any]], result: list[Any]) -> list[Any]:
    """The entries of ``result`` that do not depend on recorded random values."""
    return [r for (op, _), r in zip(ops, result, strict=True) if op in ("step", "parallel",
                                                                         "state")]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=12), crashes=st.sets(st.integers(1, 30),
                                                                         max_size=3))
def test_interrupted_programs_end_like_uninterrupted_ones(
    tmp_path: Path, ops: list[list[Any]], crashes: set[int]
) -> None:
    db = str(tmp_path / f"prop-{abs(hash((str(ops), str(crashes))))}.db")
    effects.clear()
    crash_at.clear()
    executions[0] = 0
    with durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.005) as engine:
        expected = engine.run(program, ops, workflow_id="clean")

    effects.clear()
    crash_at.update(crashes)
    executions[0] = 0
    result = None
    for _ in range(len(crashes) + 2):  # every interruption is followed by a "restart"
        with durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.005) as engine:
            interrupted.clear()
            handle = engine.start(program, ops, workflow_id="interrupted")
            wait_until(lambda: interrupted.is_set() or handle.status().finished)  # noqa: B023
            if handle.status().finished:
                result = handle.result()
                break
    assert result is not None, "the interrupted program never finished"
    assert deterministic_part(ops, result) == deterministic_part(ops, expected)
    step_keys = [k for k in effects if not k.startswith("clean")]
    # Each step ran once, plus once more for each interruption that hit it.
    assert sum(effects[k] for k in step_keys) == sum(
        1 if op == "step" else 3 for op, _ in ops if op in ("step", "parallel")
    ) + len([c for c in crashes if c <= executions[0]])

    executions[0] = 0
    with durable.Engine(db, workers=0) as engine:
        assert engine.replay("interrupted") == result
    assert executions[0] == 0
