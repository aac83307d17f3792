"""Real worker processes for the waiting tests: spawn, wait for, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import durable

APPS = Path(__file__).parent / "apps"
RUNNER = str(APPS / "waiting_runner.py")
if str(APPS.parent) not in sys.path:
    sys.path.insert(0, str(APPS.parent))
from apps import waiting  # noqa: E402, F401  (the same workflows, registered here too)


def spawn(db: str, effects: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """A worker process on ``db`` (optionally starting ``NAME ID ARGS-JSON`` first)."""
    return subprocess.Popen(
        [sys.executable, RUNNER, db, *args], env={**os.environ, "EFFECTS": str(effects), **env},
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait for a worker that serves until every workflow ended; it must exit cleanly."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def client(db: str) -> durable.Engine:
    """An engine without workers: it starts, signals and reads, and runs nothing."""
    return durable.Engine(db, workers=0, synchronous="normal", poll_interval=0.01)


def status(db: str, workflow_id: str) -> durable.Status | None:
    with client(db) as engine:
        try:
            return engine.handle(workflow_id).status()
        except durable.errors.WorkflowNotFound:
            return None
