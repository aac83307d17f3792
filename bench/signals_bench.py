"""Signals and waiting at scale: cross-process latency, and 10,000 waiting workflows.

    python bench/signals_bench.py [--workflows 10000] [--round-trips 300] [--poll 0.05]

Prints one table:

- signal round trip across processes: a client process sends a signal (at a random
  moment) to a workflow run by a worker process, and polls every 0.5 ms for the event
  the workflow publishes in answer; "wake" is the time from the send to the moment the
  woken workflow recorded ``durable.time()``. p50 and p99 over ``--round-trips``
  signals, with the worker's engine at ``poll_interval=--poll`` (the engine's default
  polls every 0.05 s).
- N workflows waiting on signals in one engine (8 workers, ``synchronous="normal"``): the
  time to start them all until each waits, the process's thread count and RSS while they
  wait (target: no thread per waiting workflow, <= 100 MB), and the time until all have
  finished after their signals are sent (from another process).
- N workflows waiting on timers, all due at one moment: time from that moment until all
  have finished.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import durable


@durable.workflow(name="bench.pingpong")
def pingpong(rounds: int) -> None:
    """Answer each ``ping`` with a published ``pong``; a fresh run every 20 pings keeps
    the replayed log short however long the benchmark runs."""
    for _ in range(20):
        if rounds <= 0:
            return
        seq = durable.wait_for_signal("ping")
        durable.set_event("pong", {"seq": seq, "woke": durable.time()})
        rounds -= 1
    durable.continue_as_new(rounds)


@durable.workflow(name="bench.await_signal")
def await_signal() -> object:
    return durable.wait_for_signal("go")


@durable.workflow(name="bench.await_timer")
def await_timer(due: float) -> float:
    durable.sleep(max(0.0, due - durable.time()))
    return durable.time()


# -- helpers ------------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def os_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return threading.active_count()


def count(db: str, status: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM workflows WHERE status = ?",
                                (status,)).fetchone()[0])
    finally:
        conn.close()


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(interval)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def emit(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def child(role: str, db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--role", role, "--db", db, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark process {proc.pid} ended early (exit {proc.wait()})")
    result: dict[str, Any] = json.loads(line)
    return result


# -- roles (each runs in its own process) ---------------------------------------------------


def serve(db: str, poll: float) -> None:
    """A worker process: serve until stdin closes."""
    with durable.Engine(db, workers=4, synchronous="normal", poll_interval=poll):
        emit(ready=True)
        sys.stdin.read()


def waiters(db: str, n: int, kind: str) -> None:
    """Start ``n`` waiting workflows in this process's engine, report, serve until done."""
    with durable.Engine(db, workers=8, synchronous="normal") as engine:
        baseline_threads = os_threads()
        started = time.perf_counter()
        if kind == "signal":
            for i in range(n):
                engine.start(await_signal, workflow_id=f"s{i}")
        else:
            due = float(sys.stdin.readline())
            for i in range(n):
                engine.start(await_timer, due, workflow_id=f"t{i}")
        wait_for(lambda: count(db, "WAITING") == n, 600, f"{n} workflows waiting", 0.05)
        emit(start_s=time.perf_counter() - started, threads=os_threads(),
             baseline_threads=baseline_threads, rss_mb=rss_mb(), waiting=count(db, "WAITING"))
        wait_for(lambda: count(db, "SUCCESS") == n, 600, f"{n} workflows finished", 0.005)
        emit(finished_at=time.time())


# -- scenarios (run by the parent) -------------------------------------------------------


def round_trips(folder: str, rounds: int, poll: float) -> dict[str, float]:
    db = os.path.join(folder, "pingpong.db")
    worker = child("serve", db, "--poll", str(poll))
    read(worker)
    wakes, trips = [], []
    with durable.Engine(db, workers=0, synchronous="normal") as engine:
        engine.start(pingpong, rounds, workflow_id="pp")
        wait_for(lambda: engine.handle("pp").status() is durable.Status.WAITING, 30,
                 "the ping-pong workflow to wait")
        for seq in range(rounds):
            # Signals come at random moments of the worker's poll cycle, not right after
            # its last answer (which would measure the worst case every time).
            time.sleep(random.uniform(0, 2 * poll))
            sent = time.time()
            engine.send_signal("pp", "ping", seq)
            while True:
                found = engine.store.published("pp", "pong")
                if found is not None and json.loads(found[1])["seq"] == seq:
                    break
                time.sleep(0.0005)
            trips.append(time.time() - sent)
            wakes.append(json.loads(found[1])["woke"] - sent)
    assert worker.stdin is not None
    worker.stdin.close()
    worker.wait(30)
    return {"wake_p50": percentile(wakes, 0.5), "wake_p99": percentile(wakes, 0.99),
            "trip_p50": percentile(trips, 0.5), "trip_p99": percentile(trips, 0.99),
            "trip_mean": statistics.fmean(trips)}


def many_signals(folder: str, n: int) -> dict[str, float]:
    db = os.path.join(folder, "signals.db")
    proc = child("waiters", db, "--workflows", str(n), "--kind", "signal")
    report = read(proc)
    with durable.Engine(db, workers=0, synchronous="normal") as engine:
        first = time.time()
        for i in range(n):
            engine.send_signal(f"s{i}", "go", i)
        last = time.time()
    done = read(proc)
    proc.wait(60)
    return {**report, "send_s": last - first, "finish_after_first_s": done["finished_at"] - first,
            "finish_after_last_s": done["finished_at"] - last}


def many_timers(folder: str, n: int, due_in: float) -> dict[str, float]:
    db = os.path.join(folder, "timers.db")
    proc = child("waiters", db, "--workflows", str(n), "--kind", "timer")
    due = time.time() + due_in
    assert proc.stdin is not None
    proc.stdin.write(f"{due}\n")
    proc.stdin.flush()
    report = read(proc)
    done = read(proc)
    proc.wait(60)
    return {**report, "due_late": report["start_s"] > due_in,
            "finish_after_due_s": done["finished_at"] - due}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--poll", type=float, default=0.05,
                        help="poll_interval of the worker engine in the round-trip test")
    parser.add_argument("--timer-due-in", type=float, default=None,
                        help="seconds from the start until every timer is due")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.role == "serve":
        return serve(options.db, options.poll)
    if options.role == "waiters":
        return waiters(options.db, options.workflows, options.kind)

    n = options.workflows
    with tempfile.TemporaryDirectory(prefix="durable-signals-bench-") as folder:
        trip = round_trips(folder, options.round_trips, options.poll)
        signals = many_signals(folder, n)
        due_in = options.timer_due_in or max(5.0, 2 * signals["start_s"] + 2)
        timers = many_timers(folder, n, due_in)

    rows = [
        (f"signal wake-up across processes, p50 / p99 (poll {options.poll:g} s)",
         f"{trip['wake_p50'] * 1e3:.1f} / {trip['wake_p99'] * 1e3:.1f} ms", "<= ~100 ms"),
        ("signal round trip (send -> published answer), p50 / p99",
         f"{trip['trip_p50'] * 1e3:.1f} / {trip['trip_p99'] * 1e3:.1f} ms", ""),
        (f"start {n:,} workflows until all wait for a signal",
         f"{signals['start_s']:.1f} s ({n / signals['start_s']:,.0f}/s)", ""),
        (f"threads while {signals['waiting']:,} wait (engine idle: "
         f"{signals['baseline_threads']})", f"{signals['threads']}",
         "no thread per workflow"),
        (f"RSS while {signals['waiting']:,} wait", f"{signals['rss_mb']:.0f} MB", "<= 100 MB"),
        (f"send {n:,} signals from another process", f"{signals['send_s']:.1f} s", ""),
        (f"all {n:,} finished, after the first signal sent",
         f"{signals['finish_after_first_s']:.1f} s", ""),
        ("    ... after the last signal sent", f"{signals['finish_after_last_s']:.1f} s", ""),
        (f"threads / RSS while {timers['waiting']:,} wait on timers",
         f"{timers['threads']} / {timers['rss_mb']:.0f} MB", ""),
        (f"all {n:,} timers due at once: finished after the due time",
         f"{timers['finish_after_due_s']:.1f} s"
         + (" (started late)" if timers["due_late"] else ""), ""),
    ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>{value_width}}  target")
    print(f"{'-' * width}  {'-' * value_width}  ------")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {target}")


if __name__ == "__main__":
    main()
