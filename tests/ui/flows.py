"""Workflows the dashboard tests run (imported by the tests and by ``-m``)."""

from __future__ import annotations

import threading
from typing import Any

import durable

#: gates[i] releases call i of ``stepper`` (so a test sees the timeline grow step by step).
gates: dict[int, threading.Event] = {}
ATTEMPTS: dict[str, int] = {}


class Opaque:
    """A value JSON cannot hold: recorded as a pickle."""

    def __init__(self, size: int) -> None:
        self.size = size


@durable.step
def charge(order: str) -> str:
    return f"charged {order}"


@durable.step
def ship(order: str, approval: Any) -> str:
    return f"shipped {order} ({approval})"


@durable.workflow
def approval(order: str) -> str:
    charged = charge(order)
    durable.set_event("stage", {"charged": charged})
    durable.state["order"] = order
    decision = durable.wait_for_signal("approve")
    return ship(order, decision)


@durable.step
def gate(index: int) -> int:
    event = gates.setdefault(index, threading.Event())
    if not event.wait(20):
        raise TimeoutError(f"gate {index} was never opened")
    return index


@durable.workflow
def stepper(count: int) -> int:
    return sum(gate(i) for i in range(count))


@durable.step(retry=durable.RetryPolicy(max_attempts=3, initial_delay=0.01, backoff="fixed"))
def flaky(key: str) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] < 2:
        raise ConnectionError(f"attempt {ATTEMPTS[key]} of {key} failed")
    return "ok"


@durable.workflow
def retrying(key: str) -> str:
    return flaky(key)


@durable.step
def broken(order: str) -> str:
    raise ValueError(f"card declined for {order}")


@durable.workflow
def failing(order: str) -> str:
    return broken(order)


@durable.step
def opaque(size: int) -> Opaque:
    return Opaque(size)


@durable.workflow
def pickled(size: int) -> int:
    return opaque(size).size


@durable.workflow
def leaf(n: int) -> int:
    return charge(str(n)) and n


@durable.workflow
def parent(count: int) -> int:
    handles = [durable.start_child(leaf, i) for i in range(count)]
    return sum(h.result() for h in handles)


@durable.workflow
def sleeper(seconds: float) -> str:
    durable.sleep(seconds)
    return "woke"


@durable.workflow
def fulfilment(order: str) -> str:
    """Retries, a timer, a published event, state and a signal: the screenshot's workflow."""
    flaky(order)
    durable.sleep(0.3)
    charged = charge(order)
    durable.set_event("stage", {"charged": charged})
    durable.state["order"] = order
    decision = durable.wait_for_signal("approve")
    return ship(order, decision)
