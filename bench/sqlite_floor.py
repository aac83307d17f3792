"""What this machine allows before any durable code runs: the cost of the smallest
commit SQLite can make, from Python's sqlite3, in the WAL mode durable uses.

A durable step is at least one such commit (its result must be durable before the
workflow sees it), and a 10-step workflow is twelve (start, ten results, end). So these
rows bound `long1000` at "normal" and `seq10` at "full" from below, on this disk. (Here
the WAL grows with each commit; durable's preallocated WAL makes a "full" commit about
half as costly, see the README.)

    python bench/sqlite_floor.py
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

COMMITS = 2_000
ROUNDS = 3
ROW = ("wf", 0, 1, 1, "step.completed", "bench.add", "(1,)", "(1,)", "json", "2", 0.0)


def commit_us(path: Path, synchronous: str, commits: int) -> float:
    """Mean µs of one BEGIN IMMEDIATE / INSERT one event / COMMIT."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events (workflow_id TEXT, position INTEGER, run INTEGER, "
        "call INTEGER, kind TEXT, name TEXT, digest TEXT, args TEXT, encoding TEXT, "
        "payload BLOB, created REAL, PRIMARY KEY (workflow_id, position)) WITHOUT ROWID"
    )
    (start,) = conn.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM events").fetchone()
    t0 = time.perf_counter()
    for position in range(start, start + commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (ROW[0], position, *ROW[2:]))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed / commits * 1e6


def main() -> None:
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}; "
          f"{ROUNDS} rounds, median")
    print(f"{'synchronous':12} {'µs per one-event commit':>24} {'bounds':>40}")
    with tempfile.TemporaryDirectory(prefix="sqlite-floor-") as tmp:
        for synchronous, commits, bounds in (
            ("NORMAL", COMMITS, "long1000 at normal (target ≤ 40 µs/step)"),
            ("FULL", COMMITS // 4, "seq10 at full: x12 (target ≤ 2.5 ms)"),
        ):
            path = Path(tmp) / f"{synchronous}.db"
            runs = [commit_us(path, synchronous, commits) for _ in range(ROUNDS)]
            print(f"{synchronous:12} {statistics.median(runs):>24.1f} {bounds:>40}")


if __name__ == "__main__":
    main()
