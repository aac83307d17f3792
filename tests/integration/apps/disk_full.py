"""A child process that runs workflows into a full disk: ``disk_full.py DB N DIR``.

Ignores SIGXFSZ, starts N workflows that write large step results, then caps the size
of any file it writes (RLIMIT_FSIZE) at the database's current size: every write that
grows a file fails (EFBIG, which SQLite reports as a full disk). It writes DIR/full,
waits for DIR/restore, lifts the cap (space is back), waits for every workflow to end
and writes DIR/done.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path

import durable

PAYLOAD = 20_000


@durable.step(name="faults.chunk")
def chunk(i: int, n: int) -> str:
    return f"{i}:{n}:" + "x" * PAYLOAD


@durable.workflow(name="faults.filler")
def filler(i: int, steps: int) -> int:
    total = 0
    for n in range(steps):
        total += len(chunk(i, n))
    return total


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.01)


def main() -> None:
    db, count, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with durable.Engine(db, workers=count, lease=3.0, synchronous="normal",
                        poll_interval=0.02, max_recoveries=1000) as engine:
        handles = [engine.start(filler, i, 200, workflow_id=f"fill-{i}") for i in range(count)]
        time.sleep(0.02)  # let them get going: the disk fills in the middle of their runs
        cap = max(os.path.getsize(db), 16_384)
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, hard))
        (folder / "full").write_text(str(cap))
        wait_for(folder / "restore")
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        for handle in handles:  # well within the time a lease needs to end, and a retry
            handle.result(timeout=float(os.environ.get("FINISH_TIMEOUT", "20")))
    (folder / "done").write_text("ok")


if __name__ == "__main__":
    main()
