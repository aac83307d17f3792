"""Real storage faults in real processes: a full disk (RLIMIT_FSIZE in a child that
ignores SIGXFSZ) and a read-only database file (``chattr +i``: these tests run as
root, which ignores file modes, so chmod would not make the file read-only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests.conftest import wait_until

APPS = Path(__file__).parent / "apps"
ROOT = Path(__file__).parents[2]
#: The durable the disk-full child imports; $CHILD_PATH runs it on another checkout
#: (e.g. an older commit: the test then shows what it catches).
CHILD_PATH = os.environ.get("CHILD_PATH", str(ROOT))


@durable.workflow
def nothing() -> None:
    return None


def reader(db: str) -> durable.Engine:
    return durable.Engine(db, workers=0, read_only=True)


def test_a_full_disk_releases_the_workflows_and_they_all_finish_once_space_is_back(
        tmp_path: Path) -> None:
    db, count = str(tmp_path / "full.db"), 8
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(
        [sys.executable, str(APPS / "disk_full.py"), db, str(count), str(tmp_path)],
        stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONPATH": CHILD_PATH})
    try:
        wait_until(lambda: (tmp_path / "full").exists() or child.poll() is not None,
                   timeout=30, what="the disk to fill")
        assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
        # Seen from this process, while the disk is full: workflows are stuck mid-run.
        wait_until(lambda: "disk I/O error" in (tmp_path / "child.log").read_text(),
                   timeout=15, what="the child to meet the fault")
        with reader(db) as engine:
            stuck = [r.workflow_id for r in engine.store.workflows(None, None, 100)
                     if not r.finished]
        assert stuck, "the disk filled only after every workflow had finished"
        # Space comes back before the leases (3 s) end: a workflow the engine stopped
        # running must not be kept under a renewed lease, or it is stuck for good.
        (tmp_path / "restore").write_text("")
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()
    assert child.returncode == 0, (tmp_path / "child.log").read_text()[-3000:]
    assert (tmp_path / "done").exists()
    text = (tmp_path / "child.log").read_text()
    # The fault really happened (SQLite reports EFBIG as an I/O error, ENOSPC as full).
    assert "disk I/O error" in text or "disk is full" in text
    with reader(db) as engine:  # a new process's view: all ended, none owned
        rows = engine.store.workflows(None, None, 100)
        assert [(r.status, r.owner) for r in rows] == [("SUCCESS", None)] * count


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[str]:
    """A durable database file made immutable with ``chattr +i`` (undone afterwards)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    db = str(tmp_path / "frozen.db")
    durable.Engine(db, workers=0).close()
    made = subprocess.run(["chattr", "+i", db], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {made.stderr.strip()}")
    try:
        yield db
    finally:
        subprocess.run(["chattr", "-i", db], check=True)


def test_a_worker_on_a_read_only_file_exits_with_a_one_line_error(immutable: str) -> None:
    before = Path(immutable).read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "durable", "worker", str(APPS / "disk_full.py"),
         "--db", immutable], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "read" in errors[0].lower(), done.stderr
    assert "Traceback" not in done.stderr
    assert Path(immutable).read_bytes() == before


def test_inspection_works_on_a_read_only_file(immutable: str) -> None:
    done = subprocess.run([sys.executable, "-m", "durable", "list", "--db", immutable],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    client = durable.Engine(immutable, workers=0)  # a writable client: writes fail cleanly
    try:
        with pytest.raises(durable.errors.StorageError, match="readonly"):
            client.start(nothing)
    finally:
        client.close()


def test_workflows_stuck_on_a_full_disk_are_recovered_after_their_process_dies(
        tmp_path: Path) -> None:
    from tests.integration.apps import disk_full  # noqa: F401  (registers faults.filler)

    db, count = str(tmp_path / "full.db"), 8
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(
        [sys.executable, str(APPS / "disk_full.py"), db, str(count), str(tmp_path)],
        stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONPATH": CHILD_PATH})
    try:
        wait_until(lambda: "disk I/O error" in (tmp_path / "child.log").read_text()
                   or child.poll() is not None, timeout=30, what="the child to meet the fault")
    finally:
        child.kill()  # dies with the disk still full
        child.wait()
        log.close()
    with durable.Engine(db, workers=count, poll_interval=0.01) as engine:
        for row in engine.store.workflows(None, None, 100):
            assert engine.handle(row.workflow_id).result(timeout=30) > 0
        rows = engine.store.workflows(None, None, 100)
    assert [(r.status, r.owner) for r in rows] == [("SUCCESS", None)] * count
