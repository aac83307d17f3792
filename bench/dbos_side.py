"""DBOS side of the benchmark. Run with bench/.venv-dbos/bin/python (see setup_dbos.sh).

DBOS is used with its defaults: on SQLite the system database is one SQLite file; with
``--pg URL`` (its production mode) a PostgreSQL database of its own on that server,
named after the run's directory (common.pg_name), which DBOS creates.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common as c

SIDE = "dbos"
PG = ""  # --pg: a PostgreSQL server URL
SYNC = "full"  # --synchronous: "normal" turns synchronous_commit off on PostgreSQL


def system_url(db_dir: Path, file: str = "dbos.sqlite") -> str:
    if PG:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(PG)
        # As durable's synchronous="normal" on PostgreSQL: commits without a WAL flush.
        query = "options=-c%20synchronous_commit%3Doff" if SYNC == "normal" else parts.query
        return urlunsplit(parts._replace(path="/" + c.pg_name(db_dir), query=query))
    return f"sqlite:///{db_dir.resolve() / file}"


def load(db_dir: Path) -> SimpleNamespace:
    """Import DBOS, configure it against db_dir and register the benchmark functions."""
    from dbos import DBOS, SetWorkflowID

    url = system_url(db_dir)
    DBOS(config={"name": "durable-bench", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step(name="bench.add")
    def add(x: int) -> int:
        return x + 1

    @DBOS.step(name="bench.block")
    def block(x: int, marker: str, flag: str) -> int:
        Path(marker).touch()
        c.wait_for_file(flag)
        return x + 1

    @DBOS.workflow(name="bench.chain")
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = add(x)
        return x

    @DBOS.workflow(name="bench.blocking")
    def blocking(marker: str, flag: str) -> int:
        x = 0
        for i in range(c.RECOVERY_STEPS):
            x = block(x, marker, flag) if i == c.BLOCKING_STEP else add(x)
        return x

    return SimpleNamespace(DBOS=DBOS, SetWorkflowID=SetWorkflowID, chain=chain, blocking=blocking)


def start(d: SimpleNamespace, wf: Any, wfid: str, *args: Any) -> Any:
    with d.SetWorkflowID(wfid):
        return d.DBOS.start_workflow(wf, *args)


def run_chain(d: SimpleNamespace, wfid: str, n: int) -> int:
    with d.SetWorkflowID(wfid):
        result: int = d.chain(n)
    assert result == n, result
    return result


def seq10(db_dir: Path) -> dict[str, float]:
    d = load(db_dir)
    d.DBOS.launch()
    for i in range(c.WARMUP):
        run_chain(d, f"warm-{i}", c.SEQ_STEPS)
    t0 = time.perf_counter()
    for i in range(c.SEQ_WORKFLOWS):
        run_chain(d, f"seq-{i}", c.SEQ_STEPS)
    total = time.perf_counter() - t0
    d.DBOS.destroy()
    return {"total_s": total, "ms_per_wf": total / c.SEQ_WORKFLOWS * 1000}


def long1000(db_dir: Path) -> dict[str, float]:
    d = load(db_dir)
    d.DBOS.launch()
    run_chain(d, "warm", c.SEQ_STEPS)
    t0 = time.perf_counter()
    run_chain(d, "long", c.LONG_STEPS)
    total = time.perf_counter() - t0
    d.DBOS.destroy()
    return {"total_s": total, "us_per_step": total / c.LONG_STEPS * 1e6}


def concurrent200(db_dir: Path) -> dict[str, float]:
    d = load(db_dir)
    d.DBOS.launch()
    run_chain(d, "warm", c.CONCURRENT_STEPS)
    t0 = time.perf_counter()
    handles = [
        start(d, d.chain, f"conc-{i}", c.CONCURRENT_STEPS) for i in range(c.CONCURRENT_WORKFLOWS)
    ]
    for h in handles:
        assert h.get_result() == c.CONCURRENT_STEPS
    total = time.perf_counter() - t0
    d.DBOS.destroy()
    return {"total_s": total, "wf_per_s": c.CONCURRENT_WORKFLOWS / total}


def recovery_child(db_dir: Path) -> None:
    d = load(db_dir)
    d.DBOS.launch()
    markers, flag = c.marker_paths(db_dir)
    for i in range(c.RECOVERY_WORKFLOWS):
        start(d, d.blocking, f"rec-{i}", str(markers / f"rec-{i}"), str(flag))
    time.sleep(600)  # killed by the parent once every workflow is blocked


def recovery_resume(db_dir: Path) -> dict[str, float]:
    d = load(db_dir)
    t0 = time.perf_counter()
    d.DBOS.launch()  # recovery of pending workflows starts here
    for i in range(c.RECOVERY_WORKFLOWS):
        h = d.DBOS.retrieve_workflow(f"rec-{i}")
        assert h.get_result(polling_interval_sec=0.005) == c.RECOVERY_STEPS
    seconds = time.perf_counter() - t0
    d.DBOS.destroy()
    return {"seconds": seconds}


def import_open(db_dir: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    from dbos import DBOS

    url = system_url(db_dir, f"open-{os.getpid()}.sqlite")
    DBOS(config={"name": "durable-bench", "system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()
    seconds = time.perf_counter() - t0
    rss = c.rss_mb()
    DBOS.destroy()
    return {"seconds": seconds, "rss_mb": rss}


SCENARIOS = {"seq10": seq10, "long1000": long1000, "concurrent200": concurrent200}


def main() -> None:
    p = c.parser(SIDE)
    p.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = p.parse_args()
    global PG, SYNC
    PG, SYNC = args.pg, args.synchronous
    db_dir: Path = args.db
    db_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], "--scenario", args.scenario, "--db", str(db_dir), "--pg", PG,
            "--synchronous", SYNC]
    if args.role == "recovery-child":
        recovery_child(db_dir)
    elif args.role == "recovery-resume":
        c.emit(SIDE, args.scenario, **recovery_resume(db_dir))
    elif args.role == "import-open":
        c.emit(SIDE, args.scenario, **import_open(db_dir))
    elif args.scenario == "recovery100":
        c.emit(SIDE, args.scenario, **c.recovery(argv, db_dir))
    elif args.scenario == "import_open":
        c.emit(SIDE, args.scenario, **c.import_open(argv))
    elif args.scenario in SCENARIOS:
        c.emit(SIDE, args.scenario, **SCENARIOS[args.scenario](db_dir))
    else:
        sys.exit(f"unknown scenario for DBOS: {args.scenario}")


if __name__ == "__main__":
    main()
