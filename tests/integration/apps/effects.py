"""Workflows for multi-process tests.

Every step appends ``workflow_id:call pid`` (its ``step_key()`` and the process it ran
in) to the file named by $EFFECTS, so a test can count how often each step's effect
happened across processes, kills and recoveries. $STEP_SECONDS slows every step;
$HOLD_FILE, when set, holds every step until that file exists."""

from __future__ import annotations

import os
import time

import durable


def effect(line: str) -> None:
    # One write() of a short line in append mode: lines from many processes never interleave.
    fd = os.open(os.environ["EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _hold_until(flag: str | None, timeout: float = 120.0) -> None:
    """Wait until the file ``flag`` exists (at once when ``flag`` is None)."""
    deadline = time.monotonic() + timeout
    while flag and not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.005)


@durable.step(name="effects.work")
def work(i: int) -> int:
    effect(f"{durable.step_key()} {os.getpid()}")
    _hold_until(os.environ.get("HOLD_FILE"))
    time.sleep(float(os.environ.get("STEP_SECONDS", "0")))
    return i * i


@durable.workflow(name="effects.chain")
def chain(n: int) -> int:
    return sum(work(i) for i in range(n))


@durable.workflow(name="effects.fan")
def fan(n: int) -> int:
    """``n`` steps in parallel, then one more after them."""
    total = sum(durable.gather(*(durable.submit(work, i) for i in range(n))))
    return total + work(n)
