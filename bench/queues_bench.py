"""Bulk starts and queue dispatch.

    python bench/queues_bench.py [--many 10000] [--loop 2000] [--dispatch 2000]

Prints one table:

- ``start_many`` of ``--many`` workflows in one transaction, against a loop of
  ``engine.start`` (``--loop`` of them; a client engine, so nothing runs meanwhile and
  every start is its own commit), at ``synchronous="full"`` (the default) and
  ``"normal"``: starts per second.
- dispatch: ``--dispatch`` one-step workflows already in the database, run by one engine
  with 8 workers, from the moment it opens until all have finished: as plain starts
  (claimed by the ordinary dispatcher) and enqueued on a queue with ``concurrency=8``
  (every dequeue counts the queue's running workflows in its transaction).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import durable

eight = durable.Queue("bench-eight", concurrency=8)


@durable.step
def work(i: int) -> int:
    return i + 1


@durable.workflow(name="bench.one_step")
def one_step(i: int) -> int:
    return work(i)


def starts_per_second(db: str, count: int, synchronous: str, bulk: bool) -> float:
    with durable.Engine(db, workers=0, synchronous=synchronous) as engine:
        began = time.perf_counter()
        if bulk:
            engine.start_many(one_step, list(range(count)))
        else:
            for i in range(count):
                engine.start(one_step, i)
        return count / (time.perf_counter() - began)


def dispatch_per_second(db: str, count: int, queued: bool) -> float:
    with durable.Engine(db, workers=0, synchronous="normal") as client:
        client.start_many(one_step, list(range(count)), queue=eight if queued else None)
    counter = sqlite3.connect(db)  # a cheap count, beside the engine's own connections
    began = time.perf_counter()
    with durable.Engine(db, workers=8, synchronous="normal", poll_interval=0.01):
        while counter.execute("SELECT COUNT(*) FROM workflows WHERE status = 'SUCCESS'"
                              ).fetchone()[0] < count:
            time.sleep(0.005)
        rate = count / (time.perf_counter() - began)
    counter.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--many", type=int, default=10_000)
    parser.add_argument("--loop", type=int, default=2_000)
    parser.add_argument("--dispatch", type=int, default=2_000)
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("full", "normal"):
            db = os.path.join(tmp, f"many-{synchronous}.db")
            rows.append((f"start_many x{args.many}", synchronous,
                         starts_per_second(db, args.many, synchronous, bulk=True)))
            db = os.path.join(tmp, f"loop-{synchronous}.db")
            rows.append((f"loop of start x{args.loop}", synchronous,
                         starts_per_second(db, args.loop, synchronous, bulk=False)))
        for queued in (False, True):
            db = os.path.join(tmp, f"dispatch-{queued}.db")
            label = "queue concurrency=8" if queued else "plain starts"
            rows.append((f"dispatch x{args.dispatch}: {label}", "normal",
                         dispatch_per_second(db, args.dispatch, queued)))
    print(f"{'what':<44} {'synchronous':<12} {'per second':>12}")
    for what, synchronous, rate in rows:
        print(f"{what:<44} {synchronous:<12} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
