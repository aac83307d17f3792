"""Version 1 of a workflow; ``versioned_v2`` changes its calls (a fraud check is
inserted), so a run started here diverges when replayed against version 2."""

from __future__ import annotations

import durable


@durable.step(name="cliapps.versioned.reserve")
def reserve(order_id: str) -> str:
    return f"reserved {order_id}"


@durable.step(name="cliapps.versioned.ship")
def ship(order_id: str) -> str:
    return f"shipped {order_id}"


@durable.workflow(name="cliapps.versioned")
def versioned(order_id: str) -> str:
    reserve(order_id)
    durable.wait_for_signal("go")
    return ship(order_id)
