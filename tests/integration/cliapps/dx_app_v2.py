"""``dx_app`` with its second call changed: a run of version 1 diverges here."""

from __future__ import annotations

import durable


@durable.step(name="dxapp.charge")
def charge(order_id: str, cents: int) -> str:
    return f"receipt-{order_id}-{cents}"


@durable.workflow(name="dxapp.checkout")
def checkout(order_id: str) -> dict[str, str]:
    receipt = charge(order_id, 4200)
    fee = charge(order_id, 2)  # was 1
    return {"receipt": receipt, "fee": fee}
