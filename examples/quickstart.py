"""Quickstart: a workflow of recorded steps, a durable timer and deterministic values.

    python examples/quickstart.py [DB]

Run it twice on the same DB: the second run starts the same workflow id, so it returns
the recorded result at once without running any step again.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import durable


# Explicit names: run as a script, these functions live in module __main__, a name that
# a worker in another process (`durable worker examples/quickstart.py`) could not find.
@durable.step(name="quickstart.reserve",
              retry=durable.RetryPolicy(max_attempts=3, initial_delay=0.1))
def reserve(order_id: str, items: list[str]) -> dict[str, object]:
    print(f"  reserving {items} for {order_id}")
    return {"order": order_id, "reserved": items}


@durable.step(name="quickstart.charge")
def charge(order_id: str, cents: int) -> str:
    key = durable.step_key()  # stable across retries and crashes: give it to the payment API
    print(f"  charging {cents} cents for {order_id} (idempotency key {key})")
    return f"receipt-{order_id}"


@durable.workflow(name="quickstart.checkout")
def checkout(order_id: str, items: list[str]) -> dict[str, object]:
    reservation = reserve(order_id, items)
    receipt = charge(order_id, 4200)
    durable.sleep(timedelta(seconds=0.2))  # a durable timer: survives restarts
    return {
        "reservation": reservation,
        "receipt": receipt,
        "tracking": str(durable.uuid4()),  # recorded: the same on every replay
        "shipped_at": durable.now().isoformat(),
    }


def main(db: str) -> None:
    with durable.Engine(db) as engine:
        handle = engine.start(checkout, "A-17", ["book", "pen"], workflow_id="order-A-17")
        print("result:", handle.result(timeout=30))
        print("history:")
        for event in handle.history():
            print(f"  #{event.call:<2} {event.kind:<20} {event.name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "quickstart.db")
