"""The ``durable`` command line: in-process through click's CliRunner, and across real
processes for what only processes can show (signals between them, SIGTERM, kill -9)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import durable
from durable.cli import cli, import_modules
from tests.conftest import wait_until

APPS = Path(__file__).parent / "cliapps"
approvals, gated, versioned_v1 = import_modules(
    [str(APPS / "approvals.py"), str(APPS / "gated.py"), str(APPS / "versioned_v1.py")]
)
WAITING = durable.Status.WAITING

Worker = tuple[subprocess.Popen[str], Path]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m durable ARGS`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "durable", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def waiting(engine: durable.Engine, workflow: durable.workflow, *args: object,
            workflow_id: str) -> durable.WorkflowHandle:
    handle = engine.start(workflow, *args, workflow_id=workflow_id)
    wait_until(lambda: handle.status() is WAITING, what=f"{workflow_id} to wait")
    return handle


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start ``durable worker ARGS`` processes; each is killed at the end if still alive."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, command: tuple[str, ...] = (sys.executable, "-m", "durable"),
              cwd: Path | None = None) -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("w") as out:
            process = subprocess.Popen([*command, "worker", *args], stdout=out,
                                       stderr=subprocess.STDOUT, text=True, cwd=cwd)
        started.append(process)
        wait_until(lambda: "durable worker (pid" in log.read_text() or process.poll() is not None,
                   what="the worker to start")
        assert process.poll() is None, log.read_text()
        return process, log

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- reading ----------------------------------------------------------------------


def test_a_command_on_a_missing_database_says_so_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = invoke("list", "--db", str(missing))
    assert result.exit_code == 2
    assert result.output.startswith("error: no database at")
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_list_shows_workflows_and_filters_them_by_status_and_name(
    engine: durable.Engine, db: str
) -> None:
    waiting(engine, approvals.approval, "A-1", workflow_id="a-1")
    engine.start(approvals.broken, "boom", workflow_id="b-1")
    wait_until(lambda: engine.handle("b-1").status() is durable.Status.FAILURE)

    everything = invoke("list", env={"DURABLE_DB": db})
    assert everything.exit_code == 0
    assert "a-1" in everything.output and "b-1" in everything.output
    assert "signal 'approved'" in everything.output
    assert "ValueError: boom" in everything.output

    only_waiting = invoke("list", "--status", "waiting", "--db", db)
    assert "a-1" in only_waiting.output and "b-1" not in only_waiting.output
    by_name = json.loads(invoke("list", "--name", "approvals.broken", "--json", "--db", db).output)
    assert [(w["workflow_id"], w["status"]) for w in by_name] == [("b-1", "FAILURE")]


def test_show_says_which_signal_a_workflow_waits_for(engine: durable.Engine, db: str) -> None:
    waiting(engine, approvals.approval, "A-2", workflow_id="a-2")
    result = invoke("show", "a-2", "--db", db)
    assert result.exit_code == 0
    assert "WAITING" in result.output
    assert "signal 'approved'" in result.output


def test_show_says_when_a_timer_is_due(engine: durable.Engine, db: str) -> None:
    waiting(engine, approvals.napper, 3600, workflow_id="nap")
    shown = json.loads(invoke("show", "nap", "--json", "--db", db).output)
    assert shown["waiting"].startswith("timer until ")
    assert "due" in shown["waiting"]


def test_show_links_a_parent_and_the_child_it_waits_for(engine: durable.Engine, db: str) -> None:
    engine.start(approvals.parent, "P-1", workflow_id="p-1")
    wait_until(lambda: engine.store.workflow("p-1/call-1") is not None
               and engine.handle("p-1/call-1").status() is WAITING
               and engine.handle("p-1").status() is WAITING, what="parent and child to wait")

    parent = json.loads(invoke("show", "p-1", "--json", "--db", db).output)
    assert parent["waiting"].startswith("child p-1/call-1")
    assert parent["children"] == [{"workflow_id": "p-1/call-1", "status": "WAITING"}]
    child = invoke("show", "p-1/call-1", "--db", db)
    assert "p-1" in child.output and "signal 'approved'" in child.output


def test_show_prints_the_error_of_a_failed_workflow(engine: durable.Engine, db: str) -> None:
    engine.start(approvals.broken, "the disk is full", workflow_id="b-2")
    wait_until(lambda: engine.handle("b-2").status() is durable.Status.FAILURE)
    result = invoke("show", "b-2", "--db", db)
    assert "FAILURE" in result.output
    assert "ValueError: the disk is full" in result.output


def test_show_prints_the_result_of_a_finished_workflow(engine: durable.Engine, db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-3", workflow_id="a-3")
    handle.signal("approved", "yes")
    handle.result(timeout=10)
    result = invoke("show", "a-3", "--db", db)
    assert "SUCCESS" in result.output
    assert '"decision": "yes"' in result.output


def test_history_shows_one_row_per_event(engine: durable.Engine, db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-4", workflow_id="a-4")
    handle.signal("approved", {"by": "ops"})
    handle.result(timeout=10)

    table = invoke("history", "a-4", "--db", db)
    assert table.exit_code == 0
    for text in ("workflow.started", "approvals.prepare", '"prepared A-4"', "signal.received",
                 "workflow.completed"):
        assert text in table.output
    events = json.loads(invoke("history", "a-4", "--json", "--db", db).output)
    assert [e["kind"] for e in events] == [
        "workflow.started", "step.completed", "signal.waiting", "signal.received",
        "workflow.completed",
    ]


# -- control ----------------------------------------------------------------------


def test_signal_delivers_its_json_payload(engine: durable.Engine, db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-5", workflow_id="a-5")
    result = invoke("signal", "a-5", "approved", '{"amount": 42}', "--db", db)
    assert result.exit_code == 0
    assert handle.result(timeout=10)["decision"] == {"amount": 42}


def test_signal_with_a_payload_that_is_not_json_is_a_clean_error(
    engine: durable.Engine, db: str
) -> None:
    handle = waiting(engine, approvals.approval, "A-6", workflow_id="a-6")
    result = invoke("signal", "a-6", "approved", "yes", "--db", db)
    assert result.exit_code == 2
    assert result.output.startswith("error: the payload 'yes' is not valid JSON")
    assert "Traceback" not in result.output
    assert handle.status() is WAITING


def test_signal_to_an_unknown_workflow_is_a_one_line_error(engine: durable.Engine,
                                                           db: str) -> None:
    result = invoke("signal", "nope", "approved", "--db", db)
    assert result.exit_code == 2
    assert result.output.startswith("error: no workflow 'nope'")
    assert len(result.output.strip().splitlines()) == 1


def test_pause_holds_a_workflow_and_resume_lets_it_finish(engine: durable.Engine,
                                                          db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-7", workflow_id="a-7")
    assert "PAUSED" in invoke("pause", "a-7", "--db", db).output
    assert handle.status() is durable.Status.PAUSED
    invoke("signal", "a-7", "approved", "true", "--db", db)
    assert handle.status() is durable.Status.PAUSED  # the signal waits in the inbox

    assert invoke("resume", "a-7", "--db", db).exit_code == 0
    assert handle.result(timeout=10)["decision"] is True


def test_cancel_ends_a_waiting_workflow(engine: durable.Engine, db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-8", workflow_id="a-8")
    assert invoke("cancel", "a-8", "--db", db).exit_code == 0
    wait_until(lambda: handle.status() is durable.Status.CANCELLED)

    again = invoke("cancel", "a-8", "--db", db)
    assert again.exit_code == 2
    assert "already ended as CANCELLED" in again.output


def test_fork_keeps_the_first_calls_and_runs_the_rest_anew(engine: durable.Engine,
                                                           db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-9", workflow_id="a-9")
    handle.signal("approved", "first")
    handle.result(timeout=10)

    result = invoke("fork", "a-9", "--at", "1", "--id", "a-9-again", "--db", db)
    assert result.exit_code == 0, result.output
    assert "a-9-again" in result.output
    forked = engine.handle("a-9-again")
    wait_until(lambda: forked.status() is WAITING, what="the fork to wait for its signal")
    kinds = [e.kind for e in forked.history()]
    assert kinds[:2] == ["workflow.started", "step.completed"]  # call 1 kept, not re-run


def test_replay_of_a_finished_workflow_reports_its_result(engine: durable.Engine,
                                                          db: str) -> None:
    handle = waiting(engine, approvals.approval, "A-10", workflow_id="a-10")
    handle.signal("approved", "ok")
    handle.result(timeout=10)
    result = invoke("replay", "a-10", "-m", str(APPS / "approvals.py"), "--db", db)
    assert result.exit_code == 0, result.output
    assert "replays to its recorded result" in result.output


# -- modules ----------------------------------------------------------------------


def test_a_file_is_imported_under_the_name_a_program_would_import_it_by() -> None:
    assert approvals.__name__ == "approvals"
    assert approvals.approval.name == "approvals.approval"


def test_a_module_that_cannot_be_found_is_a_clean_error(db: str) -> None:
    result = invoke("check", "no_such_module_anywhere", "--db", db)
    assert result.exit_code == 2
    assert "no module named 'no_such_module_anywhere'" in result.output
    missing_file = invoke("check", "nowhere/app.py", "--db", db)
    assert missing_file.exit_code == 2
    assert "no such Python file" in missing_file.output


# -- across processes ---------------------------------------------------------------


def test_a_signal_sent_from_another_process_wakes_the_workflow_in_a_worker_process(
    db: str, start_worker: Callable[..., Worker]
) -> None:
    # The console script, run from the folder of the module, which it gets by dotted name.
    script = Path(sys.executable).with_name("durable")
    command = (str(script),) if script.exists() else (sys.executable, "-m", "durable")
    worker, log = start_worker("approvals", "--db", db, "--workers", "2", command=command,
                               cwd=APPS)
    with durable.Engine(db, workers=0) as client:
        handle = client.start(approvals.approval, "X-1", workflow_id="x-1")
        wait_until(lambda: handle.status() is WAITING, what="the worker to run it to its wait")

        sent = run_cli("signal", "x-1", "approved", '{"by": "another process"}', "--db", db)
        assert sent.returncode == 0, sent.stderr
        result = handle.result(timeout=20)
    assert result == {"order": "X-1", "prepared": "prepared X-1",
                      "decision": {"by": "another process"}}
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, log.read_text()


def test_worker_stops_on_sigterm_and_its_running_workflow_resumes_elsewhere(
    db: str, tmp_path: Path, start_worker: Callable[..., Worker]
) -> None:
    folder = tmp_path / "effects"
    folder.mkdir()
    worker, log = start_worker(str(APPS / "gated.py"), "--db", db)
    with durable.Engine(db, workers=0) as client:
        client.start(gated.gated, str(folder), workflow_id="g-1")
    wait_until(lambda: (folder / "slow.runs").exists(), what="the slow step to start")

    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in log.read_text(), what="the worker to begin stopping")
    (folder / "gate").touch()  # the step in flight may now finish
    assert worker.wait(timeout=30) == 0, log.read_text()

    with durable.Engine(db, workers=0) as client:
        row = client.store.workflow("g-1")
        assert row is not None and not row.finished and row.owner is None, row
    assert not (folder / "after.runs").exists()

    with durable.Engine(db, workers=2, poll_interval=0.01) as other:
        assert other.handle("g-1").result(timeout=20) == ["slow done", "after done"]
    assert (folder / "slow.runs").read_text() == "ran\n"  # recorded before the stop: not re-run
    assert (folder / "after.runs").read_text() == "ran\n"


def test_worker_shutdown_abandons_a_step_that_outlives_the_timeout_and_it_runs_again(
    db: str, tmp_path: Path, start_worker: Callable[..., Worker]
) -> None:
    folder = tmp_path / "effects"
    folder.mkdir()
    worker, log = start_worker(str(APPS / "gated.py"), "--db", db, "--shutdown-timeout", "0.2")
    with durable.Engine(db, workers=0) as client:
        client.start(gated.gated, str(folder), workflow_id="g-2")
    wait_until(lambda: (folder / "slow.runs").exists(), what="the slow step to start")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, log.read_text()  # not held up by the 30 s step
    assert "abandoned 1 step(s)" in log.read_text()

    (folder / "gate").touch()
    with durable.Engine(db, workers=2, poll_interval=0.01) as other:
        assert other.handle("g-2").result(timeout=20) == ["slow done", "after done"]
    assert (folder / "slow.runs").read_text() == "ran\nran\n"  # in flight: at least once


def _versioned_workflows(db: str) -> None:
    """One run of version 1 waiting for its signal, one finished."""
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        waiting(engine, versioned_v1.versioned, "V-1", workflow_id="v-1")
        done = waiting(engine, versioned_v1.versioned, "V-2", workflow_id="v-2")
        done.signal("go")
        done.result(timeout=10)


def test_check_exits_0_when_every_unfinished_workflow_replays_against_the_code(db: str) -> None:
    _versioned_workflows(db)
    same = run_cli("check", str(APPS / "versioned_v1.py"), "--db", db)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "checked 1 unfinished workflow(s): 1 ok" in same.stdout


def test_check_exits_1_and_reports_a_workflow_that_diverges_from_new_code(db: str) -> None:
    _versioned_workflows(db)
    changed = run_cli("check", str(APPS / "versioned_v2.py"), "--db", db)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "DIVERGED  v-1 (cliapps.versioned)" in changed.stdout
    assert "cliapps.versioned.fraud_check" in changed.stdout  # the message names the new call
    assert "v-2" not in changed.stdout  # finished workflows are not checked
    assert "1 diverged" in changed.stdout


def test_check_exits_1_for_a_workflow_the_modules_no_longer_define(db: str) -> None:
    _versioned_workflows(db)
    other = run_cli("check", str(APPS / "approvals.py"), "--db", db)
    assert other.returncode == 1
    assert "UNKNOWN  v-1" in other.stdout


def test_replay_against_changed_code_exits_1_with_the_divergence(db: str) -> None:
    _versioned_workflows(db)
    replayed = run_cli("replay", "v-1", "-m", str(APPS / "versioned_v2.py"), "--db", db)
    assert replayed.returncode == 1
    assert replayed.stdout.startswith("diverged: workflow 'v-1' diverged from its history")
    unknown = run_cli("replay", "v-1", "--db", db)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: ") and "-m MODULE" in unknown.stderr


def test_demo_kills_its_workflow_process_and_resumes_it_in_another(tmp_path: Path) -> None:
    demo = run_cli("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "kill -9" in demo.stdout
    assert "Result:" in demo.stdout and '"tracking": "1Z' in demo.stdout
    assert "charge_card ran once" in demo.stdout
    with durable.Engine(tmp_path / "durable-demo.db", workers=0) as engine:
        assert engine.handle("order-A-17").status() is durable.Status.SUCCESS


@pytest.mark.sqlite_only  # the demo kills a process on a SQLite file
def test_demo_refuses_to_replace_a_database_that_is_not_a_demo(engine: durable.Engine,
                                                               db: str) -> None:
    engine.start(approvals.napper, 3600, workflow_id="keep-me")
    result = invoke("demo", "--db", db)
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert "holds workflows other than the demo's" in result.output
    assert engine.handle("keep-me").workflow_id == "keep-me"  # still there


@durable.step(name="test_cli.slow_step")
def slow_step(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@durable.workflow(name="test_cli.timed")
def timed() -> float:
    return slow_step(0.05) + slow_step(0.0)


def test_show_bottlenecks_lists_the_slowest_steps(db: str) -> None:
    with durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.01) as engine:
        engine.run(timed)
    result = invoke("show", "--bottlenecks", "--db", db)
    assert result.exit_code == 0, result.output
    assert "test_cli.slow_step" in result.output


def test_show_without_an_id_says_what_to_pass(db: str) -> None:
    with durable.Engine(db, workers=0):
        pass
    result = CliRunner().invoke(cli, ["show", "--db", db])
    assert result.exit_code == 2
    assert "--bottlenecks" in result.output
