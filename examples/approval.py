"""Human approval with a timeout: a workflow waits for a manager's decision, sent as a
signal from another process; when no decision comes in time it escalates instead.

    python examples/approval.py [DB]

While it waits, the workflow holds no thread and survives restarts: the decision could
come days later, from any process that opens the database (or `durable signal`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

import durable


@durable.step(name="approval.notify_manager")
def notify_manager(expense_id: str, cents: int) -> str:
    print(f"  {expense_id}: asked a manager to approve {cents / 100:.2f} EUR")
    return f"ticket-{expense_id}"


@durable.step(name="approval.pay")
def pay(expense_id: str, cents: int) -> str:
    print(f"  {expense_id}: paid {cents / 100:.2f} EUR (idempotency key {durable.step_key()})")
    return f"payment-{expense_id}"


@durable.workflow(name="approval.expense")
def expense(expense_id: str, cents: int, wait_seconds: float) -> dict[str, Any]:
    ticket = notify_manager(expense_id, cents)
    durable.set_event("status", "waiting for a decision")
    decision = durable.wait_for_signal("decision", timeout=wait_seconds, default=None)
    if decision is None:
        durable.set_event("status", "escalated")
        return {"expense": expense_id, "ticket": ticket,
                "outcome": f"escalated: no decision within {wait_seconds:g} s"}
    if not decision["approved"]:
        durable.set_event("status", "rejected")
        return {"expense": expense_id, "outcome": f"rejected by {decision['by']}"}
    payment = pay(expense_id, cents)
    durable.set_event("status", "paid")
    return {"expense": expense_id, "outcome": f"approved by {decision['by']}",
            "payment": payment}


def decide(db: str, expense_id: str, approved: bool) -> None:
    """The manager's side, in a process of its own: an engine without workers."""
    with durable.Engine(db, workers=0) as engine:
        engine.send_signal(expense_id, "decision", {"approved": approved, "by": "dana"})
    print(f"  [manager process {os.getpid()}] sent {'approve' if approved else 'reject'} "
          f"to {expense_id}")


def main(db: str) -> None:
    with durable.Engine(db) as engine:
        approved = engine.start(expense, "EXP-1", 12_000, 60.0, workflow_id="EXP-1")
        forgotten = engine.start(expense, "EXP-2", 90_000, 1.0, workflow_id="EXP-2")
        # Published by the workflow itself once it waits: no polling of the log needed.
        print("EXP-1 status:", engine.get_event("EXP-1", "status", timeout=10))
        if not approved.status().finished:
            subprocess.run([sys.executable, __file__, "--decide", db, "EXP-1"], check=True)
        print("EXP-1:", approved.result(timeout=30))
        print("EXP-2:", forgotten.result(timeout=30))
        waits = [e for e in forgotten.history() if e.kind.startswith("signal.")]
        print("EXP-2 log:", ", ".join(f"#{e.call} {e.kind}" for e in waits))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--decide"]:
        decide(sys.argv[2], sys.argv[3], approved=True)
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else
             os.path.join(tempfile.mkdtemp(prefix="durable-"), "approval.db"))
