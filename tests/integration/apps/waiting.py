"""Workflows that wait (signals, timers, children, compensations) for crash tests.

Run in real child processes by ``waiting_runner.py``. Steps append a line to the file
named by $EFFECTS, so a test can count how often each effect happened across kills.
"""

from __future__ import annotations

import os
import time

import durable


def effect(line: str) -> None:
    if "EFFECTS" not in os.environ:  # run in the test process itself: nobody counts
        return
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def _hold(name: str) -> None:
    """If $HOLD is ``name``, block while the file $HOLD_FILE exists (the test kills the
    process meanwhile)."""
    if os.environ.get("HOLD") == name:
        while os.path.exists(os.environ["HOLD_FILE"]):
            time.sleep(0.01)


@durable.step(name="waiting.note")
def note(line: str) -> None:
    effect(line)


@durable.workflow(name="waiting.one_signal")
def one_signal() -> object:
    payload = durable.wait_for_signal("go")
    note(f"received {payload!r}")
    return payload


@durable.workflow(name="waiting.two")
def two_signals() -> list[object]:
    return [durable.wait_for_signal("a"), durable.wait_for_signal("b")]


@durable.workflow(name="waiting.collect")
def collect(count: int) -> list[object]:
    """Wait for ``count`` signals ``item`` and return their payloads in the order received."""
    received: list[object] = []
    for _ in range(count):
        received.append(durable.wait_for_signal("item"))
    return received


@durable.workflow(name="waiting.sleeper")
def sleeper(seconds: float) -> list[float]:
    before = durable.time()
    note("sleeping")
    durable.sleep(seconds)
    after = durable.time()
    return [before, after]


@durable.step(name="waiting.book")
def book(what: str) -> str:
    effect(f"book {what}")
    return f"{what}-booking"


@durable.step(name="waiting.undo")
def undo(booking: str) -> None:
    effect(f"enter undo {booking}")
    _hold(booking)
    effect(f"undo {booking}")


@durable.step(name="waiting.fail")
def fail(message: str) -> None:
    raise RuntimeError(message)


@durable.workflow(name="waiting.saga")
def saga() -> str:
    for what in ("flight", "hotel", "car"):
        booking = book(what)
        durable.compensate(undo, booking)
    fail("payment declined")
    return "unreachable"


@durable.workflow(name="waiting.saga_waiting")
def saga_waiting() -> object:
    for what in ("flight", "hotel"):
        booking = book(what)
        durable.compensate(undo, booking)
    return durable.wait_for_signal("confirm")


@durable.workflow(name="waiting.kid")
def kid(n: int) -> int:
    note(f"kid {n}")
    return n * 10 + int(durable.wait_for_signal("go"))


@durable.workflow(name="waiting.parent")
def parent() -> list[object]:
    first = durable.start_child(kid, 1)
    second = durable.start_child(kid, 2)
    return [first.workflow_id, second.workflow_id, first.result(), second.result()]


@durable.step(name="waiting.long")
def long_step() -> str:
    effect("long started")
    _hold("long")
    return "done"


@durable.workflow(name="waiting.long_step")
def long_step_workflow() -> str:
    """One long step: a deploy may restart its worker many times while it runs."""
    return long_step()
