"""The waiting and control examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_approval_gets_a_signal_from_another_process_and_escalates_on_timeout(
    tmp_path: Path,
) -> None:
    out = run_example("approval.py", tmp_path, str(tmp_path / "ex.db"))
    assert "EXP-1 status: waiting for a decision" in out
    assert "[manager process" in out and "sent approve to EXP-1" in out
    assert "'outcome': 'approved by dana', 'payment': 'payment-EXP-1'" in out
    assert "escalated: no decision within 1 s" in out
    assert "signal.timeout" in out


def test_approval_runs_on_a_fresh_temporary_database_by_default(tmp_path: Path) -> None:
    out = run_example("approval.py", tmp_path)
    assert "approved by dana" in out
    assert list(tmp_path.iterdir()) == []  # nothing written where it was run


def test_travel_saga_cancels_hotel_then_flight_once_and_a_rerun_books_nothing(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "ex.db")
    out = run_example("travel_saga.py", tmp_path, db)
    lines = out.splitlines()
    assert lines.index("  cancelled hotel HO-LIS-0412") < lines.index(
        "  cancelled flight FL-LIS-0412")
    assert out.count("cancelled") == 2 and "cancelled car" not in out
    assert "trip failed: no cars left at the airport" in out
    assert "status: FAILURE" in out
    again = run_example("travel_saga.py", tmp_path, db)
    assert "booked" not in again and "cancelled" not in again  # recorded: nothing runs again
    assert "trip failed: no cars left at the airport" in again


def test_continue_as_new_keeps_each_run_log_short(tmp_path: Path) -> None:
    out = run_example("continue_as_new.py", tmp_path, str(tmp_path / "ex.db"))
    assert "result: {'cursor': 2000, 'total': 1999000}" in out
    runs, longest = out.split(" runs of at most ")
    assert int(runs.splitlines()[-1]) == 8
    assert int(longest.split()[0]) < 100
