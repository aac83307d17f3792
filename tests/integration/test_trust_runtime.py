"""Issue 10, runtime trust: step keys per run, patched once per run, a step's result as
replay decodes it, replay checks the result, recovery limits, owner ids."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from durable.engine import owners
from durable.errors import InvalidArgument, NonDeterminismError
from durable.runtime.registry import WORKFLOWS as _workflows
from tests.conftest import wait_until
from tests.integration._procs import client, finish, kill9, lines, spawn

Status = durable.Status
keys: list[tuple[str, str]] = []
answer = {"value": 1}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    keys.clear()
    answer["value"] = 1
    yield
    for name in [n for n in _workflows if n.startswith("trustrt.versioned")]:
        del _workflows[name]


@durable.step(name="trustrt.charge")
def charge() -> str:
    keys.append((durable.step_key(), durable.workflow_id()))
    return durable.step_key()


@durable.workflow(name="trustrt.monthly")
def monthly(month: int) -> str:
    key = charge()
    if month < 3:
        durable.continue_as_new(month + 1)
    return key


def test_step_key_is_unique_across_the_runs_of_one_id(engine: durable.Engine) -> None:
    assert engine.run(monthly, 1, workflow_id="sub-7") == "sub-7:3:1"
    assert keys == [("sub-7:1", "sub-7"), ("sub-7:2:1", "sub-7"), ("sub-7:3:1", "sub-7")]


@durable.step(name="trustrt.isolated_key", isolation="process")
def isolated_key() -> list[str]:
    return [durable.step_key(), durable.workflow_id()]


@durable.workflow(name="trustrt.isolated")
def isolated(run: int) -> list[str]:
    if run == 1:
        durable.continue_as_new(2)
    return isolated_key()


def test_a_process_isolated_step_knows_its_key_and_workflow_id_after_a_new_run(
    engine: durable.Engine,
) -> None:
    assert engine.run(isolated, 1, workflow_id="a:1") == ["a:1:2:1", "a:1"]


@durable.step(name="trustrt.book")
def book(items: list[str]) -> list[str]:
    items.append("book")
    return items


@durable.workflow(name="trustrt.booking")
def booking() -> list[str]:
    items: list[str] = []
    got = book(items)
    items.append("fee")  # the live object would change under the workflow
    return got


def test_a_step_result_reaches_the_workflow_as_replay_decodes_it(
    engine: durable.Engine,
) -> None:
    assert engine.run(booking, workflow_id="b") == ["book"]
    assert engine.replay("b") == ["book"]


@durable.workflow(name="trustrt.answer")
def answering() -> int:
    charge()
    return answer["value"]  # not recorded: a code change shows in the result


def test_replay_compares_the_result_with_the_recorded_one(engine: durable.Engine) -> None:
    assert engine.run(answering, workflow_id="a") == 1
    assert engine.replay("a") == 1
    answer["value"] = 2
    with pytest.raises(NonDeterminismError, match="returns another result"):
        engine.replay("a")


def deploy(patched: bool) -> durable.Workflow:
    if not patched:
        @durable.workflow(name="trustrt.versioned")
        def versioned() -> object:
            return durable.wait_for_signal("go")
        return versioned

    @durable.workflow(name="trustrt.versioned")
    def versioned_v2() -> object:
        before = durable.patched("x")
        durable.wait_for_signal("go")
        after = durable.patched("x")
        return [before, after]
    return versioned_v2


def test_patched_answers_once_per_run(db: str) -> None:
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        old = engine.start(deploy(False), workflow_id="old")
        wait_until(lambda: old.status() is Status.WAITING)
    del _workflows["trustrt.versioned"]
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        deploy(True)
        new = engine.start("trustrt.versioned", workflow_id="new")
        wait_until(lambda: new.status() is Status.WAITING)
        engine.send_signal("old", "go")
        engine.send_signal("new", "go")
        assert engine.handle("old").result(timeout=5) == [False, False]
        assert new.result(timeout=5) == [True, True]
        assert engine.replay("old") == [False, False]
        assert engine.replay("new") == [True, True]


# -- recoveries ---------------------------------------------------------------------


def test_the_recovery_limit_defaults_to_100_and_is_settable(db: str) -> None:
    with durable.Engine(db, workers=0) as engine:
        assert engine.max_recoveries == 100
    with pytest.raises(InvalidArgument):
        durable.Engine(db, workers=0, max_recoveries=-1)
    with pytest.raises(InvalidArgument):
        durable.workflow(max_recoveries="3")(lambda: None)  # type: ignore[arg-type]


def test_six_restarts_during_one_long_step_do_not_fail_a_healthy_workflow(
    db: str, tmp_path: Path
) -> None:
    """Deploy churn: each worker is killed while the same long step runs."""
    effects, hold = tmp_path / "effects", tmp_path / "hold"
    hold.touch()
    env = {"HOLD": "long", "HOLD_FILE": str(hold)}
    worker = spawn(db, effects, "waiting.long_step", "long", "[]", **env)
    for restart in range(1, 7):
        wait_until(lambda n=restart: lines(effects).count("long started") == n,
                   what=f"attempt {restart}")
        kill9(worker)
        worker = spawn(db, effects, **env)  # recovers at once: the owner's process is gone
    wait_until(lambda: lines(effects).count("long started") == 7, what="attempt 7")
    hold.unlink()
    finish(worker)
    with client(db) as engine:
        assert engine.handle("long").result(timeout=5) == "done"
        assert engine.row("long").recoveries == 6


# -- owner ids ----------------------------------------------------------------------


def test_owner_gone_compares_start_time_and_machine() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = owners.process_start(proc.pid)
        assert start is not None
        host, machine = owners.HOST, owners.MACHINE
        alive = f"{host}:{proc.pid}:{start}:{machine}:abc"
        assert not owners.owner_gone(alive)
        # The same pid, started at another time: a reused pid, not the owner.
        assert owners.owner_gone(f"{host}:{proc.pid}:{int(start) - 1}:{machine}:abc")
        # Another container (pid namespace) or boot with the same host name: never judged.
        assert not owners.owner_gone(f"{host}:{proc.pid}:{int(start) - 1}:0000:abc")
        assert not owners.owner_gone(f"other-host:{proc.pid}:{start}:{machine}:abc")
    finally:
        proc.kill()
        proc.wait()
    assert owners.owner_gone(alive)  # its process is gone
    assert not owners.owner_gone(f"{host}:{proc.pid}:abc")  # an old-style id: its lease


def test_an_owner_id_names_host_pid_start_and_machine() -> None:
    owner = owners.owner_id()
    host, pid, start, machine, _ = owner.split(":")
    assert (host, int(pid)) == (owners.HOST, os.getpid())
    assert start == owners.process_start(os.getpid())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert machine == owners.MACHINE and boot and len(machine) == 12
