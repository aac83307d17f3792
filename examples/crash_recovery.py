"""Crash recovery: a child process runs a workflow and is killed with SIGKILL half-way;
a new engine on the same file resumes it, and finished steps do not run again.

    python examples/crash_recovery.py [DB]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import durable

EFFECTS = "crash_recovery.effects"


@durable.step(name="example.transfer")
def transfer(batch: int) -> int:
    with open(os.environ.get("EFFECTS_FILE", EFFECTS), "a") as out:
        out.write(f"batch {batch} pid {os.getpid()}\n")
    time.sleep(0.15)
    return batch * 100


@durable.workflow(name="example.migrate")
def migrate(batches: int) -> int:
    return sum(transfer(b) for b in range(batches))


def child(db: str) -> None:
    with durable.Engine(db) as engine:
        engine.run(migrate, 8, workflow_id="migration")


def read_lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return file.read().splitlines()


def main(db: str) -> None:
    effects = os.environ.setdefault("EFFECTS_FILE", db + ".effects")
    for path in (db, db + "-wal", db + "-shm", effects):
        if os.path.exists(path):
            os.remove(path)
    proc = subprocess.Popen([sys.executable, __file__, "--child", db])
    while len(read_lines(effects)) < 4:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print(f"killed pid {proc.pid} with SIGKILL after {len(read_lines(effects))} batches")

    with durable.Engine(db) as engine:  # entering recovers the workflow: its owner is dead
        total = engine.handle("migration").result(timeout=60)
    lines = read_lines(effects)
    print(f"resumed in pid {os.getpid()}: total {total}")
    for line in lines:
        print("  ", line)
    batches = [line.split()[1] for line in lines]
    again = len(batches) - len(set(batches))
    print(f"{len(set(batches))} batches, {again} ran twice (at most the one in flight)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "crash_recovery.db")
