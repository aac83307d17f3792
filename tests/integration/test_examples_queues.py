"""The queue and schedule examples run as a user would run them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), str(tmp_path / "ex.db")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_queue_rate_limit_sends_at_most_four_per_second_vip_first(tmp_path: Path) -> None:
    out = run_example("queue_rate_limit.py", tmp_path)
    assert "refused: queue 'emails' already holds dedup_id 'vip'" in out
    sends = [(float(t), to) for t, to in re.findall(r"t=\s*([\d.]+)s\s+sending to (\S+)", out)]
    assert len(sends) == 13
    assert sends[0][1] == "vip@example.com"  # priority -1 runs before the others
    times = [t for t, _ in sends]
    for earlier, later in zip(times, times[4:], strict=False):
        assert later - earlier >= 0.9  # 4 per second (times printed to 0.1 s)
    assert "13 emails sent" in out


def test_nightly_report_lists_its_schedules_and_catches_up_one_missed_tick(
    tmp_path: Path,
) -> None:
    out = run_example("nightly_report.py", tmp_path)
    assert "schedule __main__.nightly_report: '0 2 * * *' (Europe/Berlin), next due" in out
    assert "after 3.5 s of downtime: caught up with 1 tick (heartbeat@" in out
    skipped = int(re.search(r"the (\d+) earlier missed ticks were not run", out)[1])  # type: ignore[index]
    assert skipped >= 2
    assert "result: ops report for" in out
    assert "schedules left: ['__main__.nightly_report']" in out
