"""The core examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), str(tmp_path / "ex.db")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_runs_and_a_second_run_replays_without_running_steps(
    tmp_path: Path,
) -> None:
    first = run_example("quickstart.py", tmp_path)
    assert "charging 4200 cents" in first and "result:" in first
    second = run_example("quickstart.py", tmp_path)
    assert "charging" not in second
    assert second.split("result:")[1].split("\n")[0] == first.split("result:")[1].split("\n")[0]


def test_crash_recovery_example_resumes_after_sigkill(tmp_path: Path) -> None:
    out = run_example("crash_recovery.py", tmp_path)
    assert "killed pid" in out
    assert "total 2800" in out
    assert "8 batches" in out
    ran_twice = int(out.split("batches, ")[1].split(" ran twice")[0])
    assert ran_twice <= 1
