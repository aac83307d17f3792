"""Workflows for the CLI tests. Imported by file path (module ``approvals``) or, from
this folder, by the dotted name ``approvals``: both give the default names
``approvals.<function>``, so a worker and a client agree on them."""

from __future__ import annotations

import durable


@durable.step
def prepare(order_id: str) -> str:
    return f"prepared {order_id}"


@durable.workflow
def approval(order_id: str) -> dict[str, object]:
    prepared = prepare(order_id)
    decision = durable.wait_for_signal("approved")
    return {"order": order_id, "prepared": prepared, "decision": decision}


@durable.workflow
def napper(seconds: float) -> str:
    durable.sleep(seconds)
    return "rested"


@durable.workflow
def parent(order_id: str) -> dict[str, object]:
    result: dict[str, object] = approval(order_id)  # a child workflow, waiting for its signal
    return result


@durable.step
def explode(message: str) -> None:
    raise ValueError(message)


@durable.workflow
def broken(message: str) -> None:
    explode(message)
