"""Version 2 of ``versioned_v1``: a fraud check inserted before the wait for "go"."""

from __future__ import annotations

import durable


@durable.step(name="cliapps.versioned.reserve")
def reserve(order_id: str) -> str:
    return f"reserved {order_id}"


@durable.step(name="cliapps.versioned.fraud_check")
def fraud_check(order_id: str) -> bool:
    return True


@durable.step(name="cliapps.versioned.ship")
def ship(order_id: str) -> str:
    return f"shipped {order_id}"


@durable.workflow(name="cliapps.versioned")
def versioned(order_id: str) -> str:
    reserve(order_id)
    fraud_check(order_id)
    durable.wait_for_signal("go")
    return ship(order_id)
