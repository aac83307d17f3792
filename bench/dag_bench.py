"""DAG runner benchmarks: validation of a 10,000-task DAG, and a wide DAG of no-op tasks.

python bench/dag_bench.py [--tasks 10000] [--wide 1000] [--max-workers 32] [--repeat 5]

Prints a table: the time to validate a random 10,000-task DAG (and a 10,000-task chain;
target < 50 ms), and for a 1,000-task wide DAG of no-op tasks (all independent, plus one
task that joins them) the total run time and the overhead per task, at
``synchronous="full"`` and ``"normal"``. Each run uses a fresh database in a temp dir.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import durable
from durable.dag import Task, Workflow

VALIDATION_TARGET_MS = 50.0


def noop() -> None:
    return None


def random_dag(size: int, seed: int = 7) -> Workflow:
    """Tasks t0..t(size-1), each depending on up to three earlier tasks."""
    rng = random.Random(seed)
    workflow = Workflow(f"bench-random-{size}")
    for i in range(size):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        workflow.add_task(Task(name=f"t{i}", func=noop, dependencies=deps))
    return workflow


def chain_dag(size: int) -> Workflow:
    workflow = Workflow(f"bench-chain-{size}")
    for i in range(size):
        workflow.add_task(Task(name=f"t{i}", func=noop, dependencies=[f"t{i - 1}"] if i else []))
    return workflow


def time_validation(workflow: Workflow, repeat: int) -> float:
    """Median milliseconds of ``workflow.validate()``."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        workflow.validate()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def wide_run(width: int, synchronous: str, max_workers: int) -> dict[str, float]:
    """Run ``width`` independent no-op tasks plus one join; seconds and µs per task."""
    with tempfile.TemporaryDirectory(prefix="dag-bench-") as directory:
        db = str(Path(directory) / "wide.db")
        with durable.Engine(db, synchronous=synchronous) as engine:
            workflow = Workflow(f"bench-wide-{synchronous}", engine=engine,
                                max_workers=max_workers)
            for i in range(width):
                workflow.add_task(Task(name=f"n{i}", func=noop))
            workflow.add_task(Task(name="join", func=lambda **upstream: len(upstream),
                                   dependencies=[f"n{i}" for i in range(width)]))
            start = time.perf_counter()
            results = workflow.run(run_id="wide-1")
            seconds = time.perf_counter() - start
            assert results["join"] == width
            start = time.perf_counter()
            engine.replay("wide-1")
            replay = time.perf_counter() - start
    tasks = width + 1
    return {"seconds": seconds, "us_per_task": seconds / tasks * 1e6,
            "tasks_per_s": tasks / seconds, "replay_s": replay}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--wide", type=int, default=1_000)
    parser.add_argument("--max-workers", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    start = time.perf_counter()
    dag = random_dag(args.tasks)
    build = time.perf_counter() - start
    rows.append((f"build a random {args.tasks:,}-task DAG (Task models)", f"{build:.2f} s", ""))
    for label, workflow in ((f"validate a random {args.tasks:,}-task DAG", dag),
                            (f"validate a {args.tasks:,}-task chain", chain_dag(args.tasks))):
        ms = time_validation(workflow, args.repeat)
        mark = "✓" if ms < VALIDATION_TARGET_MS else "✗"
        rows.append((label, f"{ms:.1f} ms", f"< {VALIDATION_TARGET_MS:.0f} ms {mark}"))
    for synchronous in ("full", "normal"):
        result: dict[str, Any] = wide_run(args.wide, synchronous, args.max_workers)
        label = f"{args.wide:,} no-op tasks wide (+1 join), synchronous={synchronous}"
        rows.append((f"{label}: total", f"{result['seconds']:.2f} s",
                     f"{result['tasks_per_s']:,.0f} tasks/s"))
        rows.append((f"{label}: per task", f"{result['us_per_task']:,.0f} µs", ""))
        rows.append((f"{label}: engine.replay()", f"{result['replay_s'] * 1000:.0f} ms", ""))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"durable.dag (max_workers={args.max_workers})", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
