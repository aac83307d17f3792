"""Process-isolated steps: real child processes, killed at their timeout."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

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


# -- more of the contract: retries after a kill, real crashes, cores in parallel ----------


@durable.step(name="iso.runaway_once", isolation="process", timeout=0.5,
              retry=durable.RetryPolicy(max_attempts=2, initial_delay=0.0))
def runaway_once(pid_dir: str) -> int:
    """Runs away on its first attempt (after leaving its pid), returns on the second."""
    attempts = os.listdir(pid_dir)
    with open(os.path.join(pid_dir, str(os.getpid())), "w"):
        pass
    while not attempts:
        time.sleep(0.01)
    return len(attempts) + 1


@durable.workflow(name="iso.retried")
def retried(pid_dir: str) -> int:
    return int(runaway_once(pid_dir))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_timed_out_isolated_step_is_killed_and_retried_per_its_policy(
    engine: durable.Engine, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    assert engine.run(retried, str(pids), workflow_id="retried") == 2
    runaway_pid = min((p.stat().st_mtime_ns, int(p.name)) for p in pids.iterdir())[1]
    assert not pid_alive(runaway_pid)
    retry = [e for e in engine.history("retried") if e.kind == "step.retry"]
    assert len(retry) == 1 and "StepTimeout" in retry[0].value["error"]


@durable.step(name="iso.segfault", isolation="process")
def segfault() -> None:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV


@durable.workflow(name="iso.segfaulting")
def segfaulting() -> str:
    try:
        segfault()
    except StepCrashed as crashed:
        return f"crashed with {crashed.exitcode}"
    return "survived"


def test_a_segfaulting_child_is_a_step_failure_the_workflow_can_handle(
    engine: durable.Engine,
) -> None:
    assert engine.run(segfaulting) == f"crashed with {-signal.SIGSEGV}"


@durable.step(name="iso.rendezvous", isolation="process")
def rendezvous(directory: str, me: str, other: str) -> int:
    """Leave a mark and wait for the other's: both run at once or this one times out."""
    with open(os.path.join(directory, me), "w"):
        pass
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(directory, other)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never ran at the same time as {me}")
        time.sleep(0.005)
    return os.getpid()


@durable.workflow(name="iso.side_by_side")
def side_by_side(directory: str) -> list[int]:
    return durable.gather(durable.submit(rendezvous, directory, "a", "b"),
                          durable.submit(rendezvous, directory, "b", "a"))


def test_submitted_isolated_steps_run_at_the_same_time_in_separate_processes(
    engine: durable.Engine, tmp_path: Path
) -> None:
    (tmp_path / "marks").mkdir()
    first, second = engine.run(side_by_side, str(tmp_path / "marks"))
    assert len({first, second, os.getpid()}) == 3


@durable.step(name="iso.span", isolation="process")
def span(seconds: float) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def test_the_pool_runs_at_most_its_size_at_once_in_children_it_keeps() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from durable.runtime.isolation import ProcessPool

    pool = ProcessPool(size=1)
    try:
        with ThreadPoolExecutor(3) as threads:
            spans = list(threads.map(
                lambda i: pool.run(span, (0.2,), {}, f"k:{i}", "wf", i), range(3)))
    finally:
        pool.close()
    assert len({pid for pid, _, _ in spans}) == 1  # one child, reused
    ordered = sorted(spans, key=lambda s: s[1])
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(ordered))  # never two at once
