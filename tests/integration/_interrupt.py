"""Stand-ins for a process dying under a step, and steps that complete in a chosen order.

Shared by the replay-order tests of submitted steps and of async workflows.
"""

from __future__ import annotations

from typing import Any

from durable.errors import Unwind
from tests.conftest import wait_until


class Interrupted(Unwind):
    """Stands in for the process dying under a step: nothing is recorded for it.

    An ``Unwind``, as durable's own control flow is: any other exception from a step,
    ``BaseException`` or not, would be recorded as the step's failure.
    """


def completed(plan: dict[str, Any], step_name: str) -> list[int]:
    """Call numbers of the completed ``step_name`` steps, in log order."""
    return [e.call for e in plan["engine"].history(plan["workflow_id"])
            if e.kind == "step.completed" and e.name == step_name]


def take_turn(plan: dict[str, Any], step_name: str, i: int) -> None:
    """Let step ``i`` complete in its turn in ``plan["order"]``, or interrupt it.

    ``plan``: ``order``, the steps' arguments in the order they are to complete; ``cut``,
    the rank from which steps are interrupted instead (or None); ``engine`` and
    ``workflow_id``, where to watch the log; ``ran`` and ``interrupted``, what happened.
    """
    rank = plan["order"].index(i)
    cut = plan["cut"]
    if cut is not None and rank >= cut:
        wait_until(lambda: len(completed(plan, step_name)) >= cut,
                   what=f"{cut} steps to complete")
        plan["interrupted"].append(i)
        raise Interrupted()
    # Complete only once every step ranked before this one has its result in the log.
    wait_until(lambda: len(completed(plan, step_name)) >= rank, what=f"step {i}'s turn ({rank})")
    plan["ran"].append(i)
