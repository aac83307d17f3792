"""Process-isolated steps: real child processes, killed at their timeout."""

from __future__ import annotations

import os
import time

import pytest

import durable
from durable.errors import StepCrashed, StepTimeout, WorkflowFailed


@durable.step(name="iso.pid", isolation="process")
def child_pid() -> int:
    return os.getpid()


@durable.step(name="iso.runaway", isolation="process", timeout=0.5)
def runaway() -> None:
    while True:
        time.sleep(0.01)


@durable.step(name="iso.crash", isolation="process")
def crash() -> None:
    os._exit(3)


@durable.step(name="iso.apply", isolation="process")
def apply(fn: object, value: int) -> int:
    return fn(value)  # type: ignore[operator]


@durable.step(name="iso.key", isolation="process")
def key_in_child() -> str:
    return durable.step_key()


@durable.workflow(name="iso.where")
def where() -> list[object]:
    factor = 7
    return [child_pid(), apply(lambda v: v * factor, 6), key_in_child()]


@durable.workflow(name="iso.stuck")
def stuck() -> str:
    try:
        runaway()
    except StepTimeout:
        return "killed"
    return "finished"


@durable.workflow(name="iso.crashing")
def crashing() -> None:
    crash()


def test_an_isolated_step_runs_in_another_process_with_closures(
    engine: durable.Engine,
) -> None:
    pid, product, key = engine.run(where, workflow_id="w")
    assert pid != os.getpid()
    assert product == 42
    assert key == "w:3"


def test_a_runaway_isolated_step_is_killed_at_its_timeout(engine: durable.Engine) -> None:
    started = time.monotonic()
    assert engine.run(stuck) == "killed"
    assert time.monotonic() - started < 30  # it did not run forever


def test_a_crashing_child_process_is_a_step_failure(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowFailed) as failed:
        engine.run(crashing)
    assert isinstance(failed.value.__cause__, StepCrashed)
    assert failed.value.__cause__.exitcode == 3
    assert engine.run(where)[1] == 42  # the engine carries on
