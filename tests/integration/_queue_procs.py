"""Worker processes for the queue, schedule and housekeeping tests (apps/worker_proc.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

APPS = Path(__file__).parent / "apps"
if str(APPS.parent) not in sys.path:
    sys.path.insert(0, str(APPS.parent))


class Workers:
    """Worker processes started by a test; every one is stopped when the test ends."""

    def __init__(self, db: str, effects: Path, logs: Path, *modules: str) -> None:
        self.db, self.effects, self.logs_dir, self.modules = db, effects, logs, modules
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, workers: int = 4, **env: str) -> subprocess.Popen[str]:
        log = open(self.logs_dir / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "worker_proc.py"), self.db, *self.modules,
             "--workers", str(workers), "--lease", "2"],
            env={**os.environ, "EFFECTS": str(self.effects), **env},
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        log.close()
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", self.logs()
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, self.logs()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs_dir.glob("worker-*.log")))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def effects(path: Path) -> list[list[str]]:
    """Every effect line, split into words, in the order they happened."""
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []
