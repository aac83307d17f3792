"""Workflows for crash tests, run in real child processes by ``runner.py``.

Every step appends a line to the file named by $EFFECTS, so the test can count how
often each step's effect happened across kills and recoveries.
"""

from __future__ import annotations

import os
import time

import durable


def effect(line: str) -> None:
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


@durable.step(name="crashy.work")
def work(i: int) -> int:
    effect(f"step {i}")
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.02")))
    return i * i


@durable.workflow(name="crashy.steps")
def steps(n: int) -> int:
    return sum(work(i) for i in range(n))


@durable.step(name="crashy.observe")
def observe(values: list[object]) -> None:
    effect("observed " + repr(values))
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.02")))


@durable.workflow(name="crashy.values")
def values() -> list[object]:
    seen = [durable.now().isoformat(), durable.random(), str(durable.uuid4()),
            durable.randint(1, 10**9)]
    observe(seen)
    for i in range(5):
        work(i)
    return seen


@durable.workflow(name="crashy.suicide", max_recoveries=3)
def suicide() -> str:
    work(0)
    os.kill(os.getpid(), 9)  # dies during every recovery: the engine must give up on it
    return "unreachable"
