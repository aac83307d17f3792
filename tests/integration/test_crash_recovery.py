"""kill -9 of real processes, then recovery in a new process."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import durable
from tests.conftest import wait_until

RUNNER = str(Path(__file__).parent / "apps" / "runner.py")
sys.path.insert(0, str(Path(__file__).parent))
from apps import crashy  # noqa: E402, F401


def spawn(db: str, effects: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EFFECTS": str(effects)}
    return subprocess.Popen([sys.executable, RUNNER, db, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_a_random_step_then_recover_runs_each_effect_once(
    db: str, tmp_path: Path, seed: int
) -> None:
    effects = tmp_path / "effects"
    kill_after = random.Random(seed).randint(1, 8)
    proc = spawn(db, effects, "start", "crashy.steps", "wf", "[10]")
    wait_until(lambda: len(lines(effects)) >= kill_after, what=f"{kill_after} step effects")
    kill9(proc)

    recovered = spawn(db, effects, "recover")
    _, err = recovered.communicate(timeout=60)
    assert recovered.returncode == 0, err
    with durable.Engine(db, workers=0) as engine:
        assert engine.handle("wf").result(timeout=5) == sum(i * i for i in range(10))
    counts = collections.Counter(lines(effects))
    assert set(counts) == {f"step {i}" for i in range(10)}
    assert sum(1 for c in counts.values() if c > 1) <= 1, counts  # at most the one in flight
    assert max(counts.values()) <= 2


def test_deterministic_values_are_the_same_after_a_crash(db: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    proc = spawn(db, effects, "start", "crashy.values", "values")
    wait_until(lambda: any(line.startswith("step 1") for line in lines(effects)))
    kill9(proc)

    recovered = spawn(db, effects, "recover")
    recovered.communicate(timeout=60)
    observed = [line for line in lines(effects) if line.startswith("observed")]
    with durable.Engine(db, workers=0) as engine:
        result = engine.handle("values").result(timeout=5)
    assert observed == [f"observed {result!r}"]


def test_a_workflow_that_kills_every_recovering_process_ends_as_failure(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    proc = spawn(db, effects, "start", "crashy.suicide", "doomed")
    proc.wait(timeout=30)
    for _ in range(10):
        recovered = spawn(db, effects, "recover")
        recovered.communicate(timeout=60)
        with durable.Engine(db, workers=0) as engine:
            if engine.handle("doomed").status() is durable.Status.FAILURE:
                break
    with durable.Engine(db, workers=0) as engine, pytest.raises(
        durable.errors.WorkflowFailed
    ) as failed:
        engine.handle("doomed").result(timeout=1)
    assert "recovered" in str(failed.value.__cause__)
    assert isinstance(failed.value.__cause__, durable.errors.RecoveryLimitExceeded)
    assert lines(effects).count("step 0") == 1


def test_a_step_interrupted_after_its_effect_runs_again_at_least_once(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    os.environ["STEP_SECONDS"] = "5"
    try:
        proc = spawn(db, effects, "start", "crashy.steps", "slow", "[2]")
        wait_until(lambda: lines(effects) == ["step 0"], what="the first effect")
        kill9(proc)
    finally:
        del os.environ["STEP_SECONDS"]
    recovered = spawn(db, effects, "recover")
    recovered.communicate(timeout=60)
    assert lines(effects) == ["step 0", "step 0", "step 1"]
