"""Testing workflows with durable.testing, on the expense approval of ``approval.py``.

Run with ``pytest examples``. The ``durable_engine`` fixture comes with durable (a pytest
plugin): a TestEngine with workers on a temporary database, whose clock the test moves
with ``advance``. ``durable.testing.replay`` checks that today's code still replays a
history exported from an earlier run (``durable export EXP-7 > histories/....json``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from approval import expense

import durable
from durable.testing import TestEngine, replay

HISTORIES = Path(__file__).parent / "histories"
DAY = 24 * 3600.0


def test_an_approved_expense_is_paid(durable_engine: TestEngine) -> None:
    handle = durable_engine.start(expense.options(workflow_id="EXP-1"), "EXP-1", 12_000, DAY)
    assert durable_engine.get_event("EXP-1", "status", timeout=5) == "waiting for a decision"
    durable_engine.send_signal("EXP-1", "decision", {"approved": True, "by": "dana"})
    result = handle.result(timeout=5)
    assert result["outcome"] == "approved by dana"
    assert result["payment"] == "payment-EXP-1"


def test_a_forgotten_expense_escalates_after_three_days(durable_engine: TestEngine) -> None:
    handle = durable_engine.start(expense, "EXP-2", 90_000, 3 * DAY)
    durable_engine.advance(timedelta(days=3))  # the three-day wait times out now
    assert handle.result(timeout=5)["outcome"] == "escalated: no decision within 259200 s"
    assert durable_engine.get_event(handle.workflow_id, "status") == "escalated"


def test_a_run_exported_last_release_still_replays_against_this_code() -> None:
    result = replay(HISTORIES / "expense-EXP-7.json", expense)
    assert result == {"expense": "EXP-7", "outcome": "approved by dana",
                      "payment": "payment-EXP-7"}


def test_a_history_exported_now_replays_and_catches_a_changed_workflow(tmp_path: Path) -> None:
    with TestEngine() as engine:
        handle = engine.start(expense.options(workflow_id="EXP-3"), "EXP-3", 500, DAY)
        engine.advance(timedelta(days=1))
        handle.result(timeout=5)
        exported = tmp_path / "EXP-3.json"
        exported.write_text(engine.export("EXP-3"))

    @durable.workflow(name="examples.expense_without_notice")
    def changed(expense_id: str, cents: int, wait_seconds: float) -> dict[str, str]:
        # The manager is no longer notified: call #1 of the recorded run has no match.
        decision = durable.wait_for_signal("decision", timeout=wait_seconds)
        return {"expense": expense_id, "outcome": str(decision)}

    with pytest.raises(durable.errors.NonDeterminismError, match="call #1"):
        replay(exported, changed)
