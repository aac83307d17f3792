"""Concurrency on one machine: many workflows at once, worker processes, isolated CPU steps.

python bench/concurrency_bench.py [--repeat 2] [--only concurrent,scaling,cpu] [--json FILE]

Every measurement runs in a fresh subprocess with a fresh temporary directory:

- ``concurrent``: 200 workflows of 10 trivial steps started at once on one engine at
  ``synchronous="full"``, until all have finished (after one warm-up workflow):
  workflows/s, for ``Engine(workers=8|16|32)``, sync and async workflows.
- ``scaling``: 600 workflows of 10 steps created by a client (``workers=0``); then 1, 2 or 4
  worker processes (``workers=16`` each, ``synchronous="full"``) open the database at the
  same moment: workflows/s from that moment until all have finished.
- ``cpu``: one workflow submits 8 CPU-bound steps (a pure-Python loop calibrated to about
  0.3 s) and gathers them, with ``isolation="thread"`` and ``isolation="process"``: wall
  seconds of the workflow (process: the first run spawns the children, the second finds
  some warm).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CONCURRENT_WORKFLOWS, STEPS = 200, 10
SCALING_WORKFLOWS, SCALING_WORKERS = 600, 16
CPU_STEPS, CPU_SECONDS = 8, 0.3
TIMEOUT = 600.0


def define() -> Any:
    """The benchmark's workflows and steps (fixed names: worker processes find them)."""
    import asyncio  # noqa: F401  (the async workflow needs a loop; the worker provides it)

    import durable

    @durable.step(name="cbench.add")
    def add(x: int) -> int:
        return x + 1

    @durable.workflow(name="cbench.chain")
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = add(x)
        return x

    @durable.workflow(name="cbench.achain")
    async def achain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = await add(x)
        return x

    @durable.step(name="cbench.spin_thread")
    def spin_thread(loops: int) -> int:
        return spin(loops)

    @durable.step(name="cbench.spin_process", isolation="process")
    def spin_process(loops: int) -> int:
        return spin(loops)

    @durable.workflow(name="cbench.fan")
    def fan(isolation: str, loops: int) -> list[int]:
        step = spin_process if isolation == "process" else spin_thread
        return durable.gather(*(durable.submit(step, loops) for _ in range(CPU_STEPS)))

    return durable, {"chain": chain, "achain": achain, "fan": fan}


def spin(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """Loops of :func:`spin` that take about ``seconds`` on this machine now."""
    loops = 100_000
    while True:
        t0 = time.perf_counter()
        spin(loops)
        took = time.perf_counter() - t0
        if took > 0.05:
            return int(loops * seconds / took)
        loops *= 2


def finished(db: str) -> int:
    import sqlite3

    conn = sqlite3.connect(db, timeout=60)
    try:
        return int(conn.execute(
            "SELECT COUNT(*) FROM workflows WHERE status IN ('SUCCESS', 'FAILURE')"
        ).fetchone()[0])
    finally:
        conn.close()


# -- roles: each runs in its own process ------------------------------------------------


def role_concurrent(db_dir: Path, workers: int, kind: str) -> dict[str, Any]:
    durable, wf = define()
    workflow = wf["achain" if kind == "async" else "chain"]
    with durable.Engine(str(db_dir / "c.db"), workers=workers, synchronous="full") as engine:
        assert engine.run(workflow, STEPS) == STEPS  # warm-up
        t0 = time.perf_counter()
        handles = [engine.start(workflow, STEPS) for _ in range(CONCURRENT_WORKFLOWS)]
        assert all(h.result(timeout=TIMEOUT) == STEPS for h in handles)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "wf_per_s": CONCURRENT_WORKFLOWS / seconds}


def role_scale_worker(db_dir: Path, workers: int) -> None:
    durable, _ = define()
    go, stop = db_dir / "go", db_dir / "stop"
    while not go.exists():
        time.sleep(0.001)
    with durable.Engine(str(db_dir / "s.db"), workers=workers, synchronous="full"):
        while not stop.exists():
            time.sleep(0.01)


def role_scaling(db_dir: Path, processes: int) -> dict[str, Any]:
    durable, wf = define()
    db = str(db_dir / "s.db")
    with durable.Engine(db, workers=0, synchronous="normal") as client:
        for i in range(SCALING_WORKFLOWS):
            client.start(wf["chain"], STEPS, workflow_id=f"s-{i}")
    procs = [
        subprocess.Popen([sys.executable, str(HERE), "--role", "scale-worker", "--db",
                          str(db_dir), "--workers", str(SCALING_WORKERS)])
        for _ in range(processes)
    ]
    try:
        time.sleep(1.0)  # let every process import durable before the start signal
        t0 = time.perf_counter()
        (db_dir / "go").touch()
        while finished(db) < SCALING_WORKFLOWS:
            if time.perf_counter() - t0 > TIMEOUT or any(p.poll() is not None for p in procs):
                raise RuntimeError("the workers stopped or took too long")
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
    finally:
        (db_dir / "stop").touch()
        for proc in procs:
            proc.wait(timeout=60)
    return {"seconds": seconds, "wf_per_s": SCALING_WORKFLOWS / seconds}


def role_cpu(db_dir: Path, isolation: str) -> dict[str, Any]:
    durable, wf = define()
    loops = calibrate(CPU_SECONDS)
    times = []
    with durable.Engine(str(db_dir / "cpu.db"), workers=2, synchronous="full") as engine:
        for run in range(2):
            t0 = time.perf_counter()
            engine.run(wf["fan"], isolation, loops, workflow_id=f"cpu-{run}")
            times.append(time.perf_counter() - t0)
    return {"first_s": times[0], "second_s": times[1], "serial_s": CPU_STEPS * CPU_SECONDS}


# -- the driver --------------------------------------------------------------------------


def measure(role: str, **options: Any) -> dict[str, Any] | str:
    """Run one role in a fresh process and directory; its JSON, or an error message."""
    with tempfile.TemporaryDirectory(prefix="cbench-") as tmp:
        argv = [sys.executable, str(HERE), "--role", role, "--db", tmp]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return "timeout"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(proc.stderr[-3000:], file=sys.stderr)
        return f"exit {proc.returncode}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


PLAN: list[tuple[str, str, str, str, dict[str, Any]]] = [
    # (group, label, role, metric, options)
    *[("concurrent", f"200 x 10-step sync workflows, workers={w}", "concurrent", "wf_per_s",
       {"workers": w, "kind": "sync"}) for w in (8, 16, 32)],
    ("concurrent", "200 x 10-step async workflows, workers=16", "concurrent", "wf_per_s",
     {"workers": 16, "kind": "async"}),
    *[("scaling", f"600 x 10-step workflows, {p} worker process{'es' if p > 1 else ''}",
       "scaling", "wf_per_s", {"processes": p}) for p in (1, 2, 4)],
    ("cpu", "8 x 0.3 s CPU steps, isolation=thread", "cpu", "first_s", {"isolation": "thread"}),
    ("cpu", "8 x 0.3 s CPU steps, isolation=process (cold)", "cpu", "first_s",
     {"isolation": "process"}),
    ("cpu", "8 x 0.3 s CPU steps, isolation=process (warm)", "cpu", "second_s",
     {"isolation": "process"}),
]
UNITS = {"wf_per_s": "workflows/s", "first_s": "wall s", "second_s": "wall s"}


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def print_table(rows: list[list[str]], header: list[str], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"\n{title}")
        for row in [header, *rows]:
            print("  ".join(row))
        return
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 120)).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement")
    parser.add_argument("--only", default="", help="comma-separated: concurrent,scaling,cpu")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="sync", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--isolation", default="thread", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "concurrent":
        print(json.dumps(role_concurrent(args.db, args.workers, args.kind)))
    elif args.role == "scale-worker":
        role_scale_worker(args.db, args.workers)
    elif args.role == "scaling":
        print(json.dumps(role_scaling(args.db, args.processes)))
    elif args.role == "cpu":
        print(json.dumps(role_cpu(args.db, args.isolation)))
    else:
        run_all(args)


def run_all(args: argparse.Namespace) -> None:
    groups = {g.strip() for g in args.only.split(",") if g.strip()} or {"concurrent", "scaling",
                                                                        "cpu"}
    cache: dict[tuple[str, str], list[dict[str, Any] | str]] = {}
    rows, raw = [], []
    for group, label, role, metric, options in PLAN:
        if group not in groups:
            continue
        key = (role, json.dumps(options, sort_keys=True))
        if key not in cache:  # the cold and warm process rows share their runs
            cache[key] = []
            for run in range(args.repeat):
                print(f"  {label} (run {run + 1})", file=sys.stderr, flush=True)
                cache[key].append(measure(role, **options))
        results = cache[key]
        cells = [r if isinstance(r, str) else fmt(float(r[metric])) for r in results]
        rows.append([group, label, UNITS[metric], *cells])
        raw.append({"group": group, "label": label, "metric": metric, "results": results})
    header = ["group", "measurement", "unit", *[f"run {i + 1}" for i in range(args.repeat)]]
    print_table(rows, header, f"durable concurrency (os.cpu_count()={os.cpu_count()})")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    main()
