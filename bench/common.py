"""Helpers shared by durable_side.py and dbos_side.py (stdlib only: both venvs import it)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SEQ_WORKFLOWS = 300
SEQ_STEPS = 10
LONG_STEPS = 1000
CONCURRENT_WORKFLOWS = 200
CONCURRENT_STEPS = 10
RECOVERY_WORKFLOWS = 100
RECOVERY_STEPS = 5
BLOCKING_STEP = 2  # zero-based: the third step blocks
WARMUP = 5
IMPORT_RUNS = 3


THROUGHPUT_WORKFLOWS = 400  # workers1/2/4: chains of CONCURRENT_STEPS, N processes
WAKEUPS = 100  # wakeup: signals, each to a workflow waiting in another process


def parser(side: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=f"{side} side of the durable benchmark")
    p.add_argument("--scenario", required=True)
    p.add_argument("--db", required=True, type=Path, help="fresh directory for the database")
    p.add_argument("--role", default="main", help=argparse.SUPPRESS)
    p.add_argument("--pg", default="", help="a PostgreSQL URL: run on it instead of SQLite")
    return p


def pg_name(db_dir: Path) -> str:
    """The schema (durable) or database (DBOS) of one run on PostgreSQL: from its dir."""
    return "bench_" + "".join(ch if ch.isalnum() else "_" for ch in db_dir.name.lower())


def emit(side: str, scenario: str, **metrics: Any) -> None:
    print(json.dumps({"side": side, "scenario": scenario, **metrics}), flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wait_for_file(path: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.002)


def marker_paths(db_dir: Path) -> tuple[Path, Path]:
    """Directory where each blocked step drops a marker, and the flag that unblocks them."""
    return db_dir / "markers", db_dir / "go"


def _last_json(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON result in output:\n{stdout}")
    result: dict[str, Any] = json.loads(lines[-1])
    return {k: v for k, v in result.items() if k not in ("side", "scenario")}


def spawn_role(argv: list[str], role: str, log: Path) -> subprocess.Popen[str]:
    """This side's script in another process with ``role``; it prints ``ready`` first."""
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, *argv, "--role", role],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"role {role} did not start:\n{log.read_text()[-4000:]}")
    return proc


def stop_roles(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_role(argv: list[str], role: str, timeout: float = 180.0) -> dict[str, Any]:
    """Run this side's script again in a fresh process with another role; return its JSON."""
    proc = subprocess.run(
        [sys.executable, *argv, "--role", role], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"role {role} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return _last_json(proc.stdout)


def recovery(argv: list[str], db_dir: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Child starts the blocking workflows; kill -9 it once all are blocked; time the resume."""
    markers, flag = marker_paths(db_dir)
    markers.mkdir(parents=True, exist_ok=True)
    log = db_dir / "recovery-child.log"
    with log.open("w") as err:
        child = subprocess.Popen(
            [sys.executable, *argv, "--role", "recovery-child"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + timeout
    try:
        while len(os.listdir(markers)) < RECOVERY_WORKFLOWS:
            if child.poll() is not None:
                raise RuntimeError(f"recovery child exited early:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                blocked = len(os.listdir(markers))
                raise TimeoutError(f"only {blocked} workflows blocked in {timeout}s")
            time.sleep(0.01)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    flag.touch()
    return run_role(argv, "recovery-resume", timeout)


def import_open(argv: list[str]) -> dict[str, Any]:
    """Median over a few fresh processes of import + open, with the RSS after."""
    runs = [run_role(argv, "import-open", timeout=60) for _ in range(IMPORT_RUNS)]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rss_mb": statistics.median(r["rss_mb"] for r in runs),
    }
