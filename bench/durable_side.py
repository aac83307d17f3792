"""durable side of the benchmark, through its public API only. Run with the project's python."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common as c

SIDE = "durable"
REPLAYS = 50
COLD_REPLAYS = 10
PG = ""  # --pg: a PostgreSQL URL; each run gets its own schema (see common.pg_name)


def load() -> SimpleNamespace:
    """Import durable and define the benchmark workflows (names fixed, so recovery finds them)."""
    import durable

    @durable.step(name="bench.add")
    def add(x: int) -> int:
        return x + 1

    @durable.step(name="bench.block")
    def block(x: int, marker: str, flag: str) -> int:
        Path(marker).touch()
        c.wait_for_file(flag)
        return x + 1

    @durable.workflow(name="bench.chain")
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = add(x)
        return x

    @durable.step(name="bench.stamp")
    def stamp() -> float:
        return time.time()

    @durable.workflow(name="bench.wake")
    def wake() -> list[float]:
        sent = durable.wait_for_signal("go")
        return [sent, stamp()]

    @durable.workflow(name="bench.blocking")
    def blocking(marker: str, flag: str) -> int:
        x = 0
        for i in range(c.RECOVERY_STEPS):
            x = block(x, marker, flag) if i == c.BLOCKING_STEP else add(x)
        return x

    return SimpleNamespace(durable=durable, chain=chain, blocking=blocking, wake=wake)


def database(db_dir: Path) -> str:
    if PG:
        return f"{PG}{'&' if '?' in PG else '?'}schema={c.pg_name(db_dir)}"
    return str(db_dir / "durable.db")


def engine(d: SimpleNamespace, db_dir: Path, sync: str, **kwargs: Any) -> Any:
    return d.durable.Engine(database(db_dir), synchronous=sync, **kwargs)


def run_chain(eng: Any, d: SimpleNamespace, wfid: str, n: int) -> int:
    result: int = eng.start(d.chain, n, workflow_id=wfid).result(timeout=120)
    assert result == n, result
    return result


def seq10(db_dir: Path, sync: str) -> dict[str, float]:
    d = load()
    with engine(d, db_dir, sync) as eng:
        for i in range(c.WARMUP):
            run_chain(eng, d, f"warm-{i}", c.SEQ_STEPS)
        t0 = time.perf_counter()
        for i in range(c.SEQ_WORKFLOWS):
            run_chain(eng, d, f"seq-{i}", c.SEQ_STEPS)
        total = time.perf_counter() - t0
    return {"total_s": total, "ms_per_wf": total / c.SEQ_WORKFLOWS * 1000}


def long1000(db_dir: Path, sync: str) -> dict[str, float]:
    d = load()
    with engine(d, db_dir, sync) as eng:
        run_chain(eng, d, "warm", c.SEQ_STEPS)
        t0 = time.perf_counter()
        run_chain(eng, d, "long", c.LONG_STEPS)
        total = time.perf_counter() - t0
    return {"total_s": total, "us_per_step": total / c.LONG_STEPS * 1e6}


def concurrent200(db_dir: Path, sync: str) -> dict[str, float]:
    d = load()
    with engine(d, db_dir, sync) as eng:
        run_chain(eng, d, "warm", c.CONCURRENT_STEPS)
        t0 = time.perf_counter()
        handles = [
            eng.start(d.chain, c.CONCURRENT_STEPS, workflow_id=f"conc-{i}")
            for i in range(c.CONCURRENT_WORKFLOWS)
        ]
        for h in handles:
            assert h.result(timeout=120) == c.CONCURRENT_STEPS
        total = time.perf_counter() - t0
    return {"total_s": total, "wf_per_s": c.CONCURRENT_WORKFLOWS / total}


def replay(db_dir: Path, sync: str) -> dict[str, float]:
    """Warm: one engine replays the workflow REPLAYS times (its log read once, then only
    checked for new events). Cold: a new engine each time, so the log is read from SQLite.
    Each replay is timed alone and the median taken: on a shared VM one stall of the host
    moves a mean of 50 short runs by half."""
    d = load()
    with engine(d, db_dir, sync) as eng:
        run_chain(eng, d, "long", c.LONG_STEPS)
        events = len(eng.history("long"))
        assert eng.replay("long") == c.LONG_STEPS  # a check, and the first (cold) read
        warm = [timed(eng.replay, "long") for _ in range(REPLAYS)]
    cold = []
    for _ in range(COLD_REPLAYS):
        with engine(d, db_dir, sync, workers=0) as eng:
            cold.append(timed(eng.replay, "long"))
    return {
        "events": events,
        "ms_per_replay": statistics.median(warm) * 1000,
        "events_per_s": events / statistics.median(warm),
        "events_per_s_mean": events * REPLAYS / sum(warm),
        "cold_events_per_s": events / statistics.median(cold),
    }


def worker(db_dir: Path, sync: str) -> None:
    """A worker process for the multi-process scenarios: serves until SIGTERM."""
    import signal
    import threading

    d = load()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with engine(d, db_dir, sync, workers=8):
        print("ready", flush=True)
        while not stop.wait(0.1):
            pass


def throughput(db_dir: Path, sync: str, argv: list[str], processes: int) -> dict[str, float]:
    """Workflows per second with ``processes`` worker processes on one database, started
    by a client engine that runs nothing itself."""
    d = load()
    with engine(d, db_dir, sync, workers=0) as client:  # creates the database first
        procs = [c.spawn_role(argv, "worker", db_dir / f"worker-{i}.log")
                 for i in range(processes)]
        try:
            run_chain(client, d, "warm", c.CONCURRENT_STEPS)
            t0 = time.perf_counter()
            handles = [client.start(d.chain, c.CONCURRENT_STEPS, workflow_id=f"tp-{i}")
                       for i in range(c.THROUGHPUT_WORKFLOWS)]
            for h in handles:
                assert h.result(timeout=300) == c.CONCURRENT_STEPS
            total = time.perf_counter() - t0
        finally:
            c.stop_roles(procs)
    return {"total_s": total, "wf_per_s": c.THROUGHPUT_WORKFLOWS / total}


def wakeup(db_dir: Path, sync: str, argv: list[str]) -> dict[str, float]:
    """Signal wake-up across processes: a client signals a workflow that waits in a worker
    process, one at a time; the latency is from the send to the first step after it."""
    d = load()
    with engine(d, db_dir, sync, workers=0) as client:
        procs = [c.spawn_role(argv, "worker", db_dir / "worker-0.log")]
        try:
            handles = [client.start(d.wake, workflow_id=f"wake-{i}") for i in range(c.WAKEUPS)]
            deadline = time.monotonic() + 60
            while sum(h.status().value == "WAITING" for h in handles) < c.WAKEUPS:
                assert time.monotonic() < deadline, "workflows did not reach their wait"
                time.sleep(0.01)
            latencies = []
            for h in handles:
                h.signal("go", time.time())
                sent, woke = h.result(timeout=60)
                latencies.append(woke - sent)
        finally:
            c.stop_roles(procs)
    latencies.sort()
    return {"p50_ms": statistics.median(latencies) * 1000,
            "p90_ms": latencies[int(len(latencies) * 0.9)] * 1000}


def timed(fn: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def recovery_child(db_dir: Path, sync: str) -> None:
    d = load()
    markers, flag = c.marker_paths(db_dir)
    # One worker per workflow, so that all of them can be blocked in step 3 at once.
    with engine(d, db_dir, sync, workers=c.RECOVERY_WORKFLOWS) as eng:
        for i in range(c.RECOVERY_WORKFLOWS):
            eng.start(d.blocking, str(markers / f"rec-{i}"), str(flag), workflow_id=f"rec-{i}")
        time.sleep(600)  # killed by the parent once every workflow is blocked


def recovery_resume(db_dir: Path, sync: str) -> dict[str, float]:
    d = load()
    t0 = time.perf_counter()
    with engine(d, db_dir, sync) as eng:  # recovery starts on entering
        for i in range(c.RECOVERY_WORKFLOWS):
            assert eng.handle(f"rec-{i}").result(timeout=120) == c.RECOVERY_STEPS
        seconds = time.perf_counter() - t0
    return {"seconds": seconds}


def import_open(db_dir: Path, sync: str) -> dict[str, float]:
    t0 = time.perf_counter()
    import durable

    db = database(db_dir) if PG else str(db_dir / f"open-{os.getpid()}.db")
    eng = durable.Engine(db, synchronous=sync)
    eng.__enter__()
    seconds = time.perf_counter() - t0
    rss = c.rss_mb()
    eng.__exit__(None, None, None)
    return {"seconds": seconds, "rss_mb": rss}


SCENARIOS = {"seq10": seq10, "long1000": long1000, "concurrent200": concurrent200, "replay": replay}


def main() -> None:
    p = c.parser(SIDE)
    p.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = p.parse_args()
    global PG
    PG = args.pg
    db_dir: Path = args.db
    db_dir.mkdir(parents=True, exist_ok=True)
    sync: str = args.synchronous
    argv = [sys.argv[0], "--scenario", args.scenario, "--db", str(db_dir), "--synchronous", sync,
            "--pg", PG]
    if args.role == "worker":
        worker(db_dir, sync)
    elif args.scenario.startswith("workers"):
        processes = int(args.scenario.removeprefix("workers"))
        c.emit(SIDE, args.scenario, **throughput(db_dir, sync, argv, processes))
    elif args.scenario == "wakeup":
        c.emit(SIDE, args.scenario, **wakeup(db_dir, sync, argv))
    elif args.role == "recovery-child":
        recovery_child(db_dir, sync)
    elif args.role == "recovery-resume":
        c.emit(SIDE, args.scenario, **recovery_resume(db_dir, sync))
    elif args.role == "import-open":
        c.emit(SIDE, args.scenario, **import_open(db_dir, sync))
    elif args.scenario == "recovery100":
        c.emit(SIDE, args.scenario, **c.recovery(argv, db_dir))
    elif args.scenario == "import_open":
        c.emit(SIDE, args.scenario, **c.import_open(argv))
    elif args.scenario in SCENARIOS:
        c.emit(SIDE, args.scenario, **SCENARIOS[args.scenario](db_dir, sync))
    else:
        sys.exit(f"unknown scenario for durable: {args.scenario}")


if __name__ == "__main__":
    main()
