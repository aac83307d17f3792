"""Worker processes on one SQLite file: clients, claims, kill -9, many writers at once."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests.conftest import wait_until

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(Path(__file__).parent))
from apps import effects  # noqa: E402  (registers the workflows, as the workers do)

LEASE = 1.0


class Workers:
    """Worker processes started by a test; every one is stopped when the test ends."""

    def __init__(self, db: str, effects_file: Path, tmp_path: Path) -> None:
        self.db, self.effects_file, self.tmp_path = db, effects_file, tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, workers: int = 4, **env: str) -> subprocess.Popen[str]:
        log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "worker_proc.py"), self.db, "apps.effects",
             "--workers", str(workers), "--lease", str(LEASE)],
            env={**os.environ, "EFFECTS": str(self.effects_file), **env},
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        log.close()
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", self.logs()
        return proc

    def stop(self, proc: subprocess.Popen[str]) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("worker-*.log")))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(db: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(db, tmp_path / "effects", tmp_path)
    yield pool
    pool.close()


def effect_lines(path: Path) -> list[tuple[str, int]]:
    """``(step_key, pid)`` of every step effect, in the order they happened."""
    if not path.exists():
        return []
    pairs = (line.split() for line in path.read_text().splitlines())
    return [(key, int(pid)) for key, pid in pairs]


def effect_counts(path: Path) -> collections.Counter[str]:
    return collections.Counter(key for key, _ in effect_lines(path))


def all_finished(client: durable.Engine, ids: list[str]) -> bool:
    return all(client.handle(i).status().finished for i in ids)


def test_a_client_engine_starts_workflows_that_a_worker_process_finishes(
    db: str, workers: Workers
) -> None:
    with durable.Engine(db, workers=0) as client:
        handle = client.start(effects.chain, 3, workflow_id="from-client")
        assert handle.status() is durable.Status.PENDING  # a client runs nothing itself
        workers.spawn()
        assert handle.result(timeout=30) == 0 + 1 + 4
    assert effect_counts(workers.effects_file) == {f"from-client:{c}": 1 for c in (1, 2, 3)}


def test_two_worker_processes_run_every_step_effect_exactly_once(
    db: str, workers: Workers
) -> None:
    with durable.Engine(db, workers=0) as client:
        first, second = workers.spawn(STEP_SECONDS="0.05"), workers.spawn(STEP_SECONDS="0.05")
        ids = [f"wf-{i}" for i in range(20)]
        for workflow_id in ids:
            client.start(effects.chain, 5, workflow_id=workflow_id)
        assert [client.handle(i).result(timeout=60) for i in ids] == [30] * 20
    assert workers.stop(first) == 0 and workers.stop(second) == 0, workers.logs()
    counts = effect_counts(workers.effects_file)
    assert counts == {f"{i}:{c}": 1 for i in ids for c in range(1, 6)}
    assert {pid for _, pid in effect_lines(workers.effects_file)} == {first.pid, second.pid}
    assert "locked" not in workers.logs()


def test_killing_one_of_two_workers_mid_run_loses_no_workflow_and_reruns_only_its_steps(
    db: str, workers: Workers
) -> None:
    with durable.Engine(db, workers=0) as client:
        victim = workers.spawn(STEP_SECONDS="0.1")
        survivor = workers.spawn(STEP_SECONDS="0.1")
        ids = [f"wf-{i}" for i in range(20)]
        for workflow_id in ids:
            client.start(effects.chain, 5, workflow_id=workflow_id)
        wait_until(lambda: sum(pid == victim.pid for _, pid in effect_lines(
            workers.effects_file)) >= 4, timeout=30, what="the victim to be running steps")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert [client.handle(i).result(timeout=60) for i in ids] == [30] * 20
    assert workers.stop(survivor) == 0, workers.logs()

    lines = effect_lines(workers.effects_file)
    counts = effect_counts(workers.effects_file)
    assert set(counts) == {f"{i}:{c}" for i in ids for c in range(1, 6)}
    again = {key for key, count in counts.items() if count > 1}
    assert max(counts.values()) <= 2, counts  # an in-flight step runs at most once more
    first_runner = {key: pid for key, pid in reversed(lines)}
    assert all(first_runner[key] == victim.pid for key in again)  # and only the victim's
    assert len(again) <= 4  # the victim ran at most 4 steps at once (its workers)
    assert "locked" not in workers.logs()


def test_sixteen_processes_appending_at_once_meet_no_lock_error(
    db: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "EFFECTS": str(tmp_path / "effects"), "GO_FILE": str(go)}
    procs = [
        subprocess.Popen([sys.executable, str(APPS / "appender.py"), db, str(n), "5", "10"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(16)
    ]
    try:
        for proc in procs:  # every process is up before any opens the (not yet created) file
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    errors = "\n".join(err for _, err in outcomes)
    assert "locked" not in errors and "busy" not in errors.lower(), errors
    assert [proc.returncode for proc in procs] == [0] * 16, errors
    assert [out.strip() for out, _ in outcomes] == ["[285, 285, 285, 285, 285]"] * 16
    counts = effect_counts(tmp_path / "effects")
    assert counts == {f"p{n}-{k}:{c}": 1 for n in range(16) for k in range(5) for c in range(1, 11)}


def test_a_worker_stopped_by_sigterm_releases_its_workflow_for_the_next_worker(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    with durable.Engine(db, workers=0) as client:
        handle = client.start(effects.chain, 3, workflow_id="handed-over")
        stopping = workers.spawn(HOLD_FILE=str(hold))
        wait_until(lambda: effect_counts(workers.effects_file), what="the first step to start")
        stopping.send_signal(signal.SIGTERM)
        hold.touch()  # the running step finishes; the workflow stops at its next call
        assert stopping.wait(timeout=30) == 0, workers.logs()
        row = client.store.workflow("handed-over")
        assert row is not None and row.owner is None and not row.finished  # released
        workers.spawn()
        assert handle.result(timeout=30) == 0 + 1 + 4
    assert effect_counts(workers.effects_file) == {f"handed-over:{c}": 1 for c in (1, 2, 3)}


def test_a_frozen_worker_loses_its_workflows_after_the_lease_and_is_fenced_when_it_wakes(
    db: str, workers: Workers
) -> None:
    with durable.Engine(db, workers=0) as client:
        frozen = workers.spawn(STEP_SECONDS="0.2")
        ids = [f"wf-{i}" for i in range(4)]
        for workflow_id in ids:
            client.start(effects.chain, 3, workflow_id=workflow_id)
        wait_until(lambda: len(effect_lines(workers.effects_file)) >= 4, what="four steps")
        frozen.send_signal(signal.SIGSTOP)  # alive, but renews no lease and appends nothing
        try:
            workers.spawn()
            assert [client.handle(i).result(timeout=30) for i in ids] == [5] * 4
        finally:
            frozen.send_signal(signal.SIGCONT)
        # Woken up, the frozen worker finishes the steps it was running: their appends
        # must all be refused, since the workflows are no longer its own.
        histories_before = {i: client.history(i) for i in ids}
        assert workers.stop(frozen) == 0, workers.logs()
        assert {i: client.history(i) for i in ids} == histories_before
    for workflow_id in ids:
        answered = [e.call for e in histories_before[workflow_id]
                    if e.kind in ("step.completed", "step.failed")]
        assert sorted(answered) == [1, 2, 3]  # one answer per call: one executor recorded it
    counts = effect_counts(workers.effects_file)
    assert set(counts) == {f"{i}:{c}" for i in ids for c in (1, 2, 3)}
    assert max(counts.values()) <= 2
