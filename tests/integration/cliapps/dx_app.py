"""A workflow for the developer-experience CLI tests (export, replay --from-file,
--break-at, worker logs). Its step appends to $DXAPP_MARKER when it really runs."""

from __future__ import annotations

import os

import durable


@durable.step(name="dxapp.charge")
def charge(order_id: str, cents: int) -> str:
    marker = os.environ.get("DXAPP_MARKER")
    if marker:
        with open(marker, "a") as out:
            out.write(f"charged {cents}\n")
    return f"receipt-{order_id}-{cents}"


@durable.workflow(name="dxapp.checkout")
def checkout(order_id: str) -> dict[str, str]:
    receipt = charge(order_id, 4200)
    fee = charge(order_id, 1)
    return {"receipt": receipt, "fee": fee}


@durable.workflow(name="dxapp.napping")
def napping(order_id: str) -> str:
    durable.sleep(0.2)
    return charge(order_id, 5)
