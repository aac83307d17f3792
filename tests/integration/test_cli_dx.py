"""The CLI for developers: export, replay --from-file, replay --break-at (pdb driven
through stdin), hints that keep --db, worker log formats and its advice on workflows
recorded under __main__."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import durable
from durable.cli import import_modules
from tests.conftest import wait_until

APPS = Path(__file__).parent / "cliapps"
APP = str(APPS / "dx_app.py")
(dx_app,) = import_modules([APP])


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "durable", *args], capture_output=True,
                          text=True, timeout=120, input=stdin, cwd=cwd,
                          env={**os.environ, **(env or {})})


def _finished_checkout(db: Path, marker: Path) -> None:
    """Run dxapp.checkout("A-1") to its end in a process of its own."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(APPS)!r})
        import durable, dx_app
        with durable.Engine({str(db)!r}, synchronous="normal") as engine:
            engine.run(dx_app.checkout.options(workflow_id="A-1"), "A-1")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env={**os.environ, "DXAPP_MARKER": str(marker)})


def test_export_then_replay_from_file_without_the_database(tmp_path: Path) -> None:
    db, marker = tmp_path / "shop.db", tmp_path / "charged.txt"
    _finished_checkout(db, marker)
    exported = run_cli("export", "A-1", "--db", str(db))
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["format"] == "durable.history" and data["version"] == 1
    assert data["workflow"]["name"] == "dxapp.checkout"
    run_json = tmp_path / "run.json"
    run_json.write_text(exported.stdout)
    db.unlink()

    same = run_cli("replay", "--from-file", str(run_json), "-m", APP,
                   env={"DXAPP_MARKER": str(marker)})
    assert same.returncode == 0, same.stderr
    assert "replays to its recorded result" in same.stdout and "receipt-A-1-4200" in same.stdout

    changed = run_cli("replay", "--from-file", str(run_json), "-m", str(APPS / "dx_app_v2.py"))
    assert changed.returncode == 1
    assert "diverged" in changed.stdout and "call #2" in changed.stdout
    assert marker.read_text().splitlines() == ["charged 4200", "charged 1"]  # nothing re-ran


def test_replay_break_at_stops_in_pdb_with_the_workflow_locals(tmp_path: Path) -> None:
    db, marker = tmp_path / "shop.db", tmp_path / "charged.txt"
    _finished_checkout(db, marker)
    done = run_cli("replay", "A-1", "-m", APP, "--db", str(db), "--break-at", "1",
                   stdin="p sorted(locals())\np receipt\nc\n",
                   env={"DXAPP_MARKER": str(marker)})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "replayed to call #1" in out
    assert "['order_id', 'receipt']" in out  # the workflow's frame, after call #1
    assert "'receipt-A-1-4200'" in out  # its recorded value
    assert "replays to its recorded result" in out  # `c` ran the replay to its end
    assert marker.read_text().splitlines() == ["charged 4200", "charged 1"]  # no step ran


def test_break_at_past_the_history_is_a_clean_error(tmp_path: Path) -> None:
    db, marker = tmp_path / "shop.db", tmp_path / "charged.txt"
    _finished_checkout(db, marker)
    done = run_cli("replay", "A-1", "-m", APP, "--db", str(db), "--break-at", "9")
    assert done.returncode == 2
    assert "holds calls 1 to 2" in done.stderr


def test_hints_printed_by_commands_carry_the_db_given(tmp_path: Path) -> None:
    db = tmp_path / "other place.db"
    with durable.Engine(db, workers=0) as engine:
        engine.start(dx_app.checkout.options(workflow_id="B-1"), "B-1")
    paused = run_cli("pause", "B-1", "--db", str(db))
    assert f"`durable resume B-1 --db '{db}'`" in paused.stdout, paused.stdout
    missing = run_cli("show", "nope", "--db", str(db))
    assert f"`durable list --db '{db}'`" in missing.stderr, missing.stderr
    no_db = run_cli("pause", "B-1", env={"DURABLE_DB": str(db)})  # from the environment
    assert "`durable resume B-1`" in no_db.stdout, no_db.stdout


def test_worker_json_logs_carry_the_workflow_fields(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "durable", "worker", APP, "--db", str(db), "--workers", "2",
             "--log-format", "json", "--log-level", "DEBUG"],
            stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "durable worker (pid" in log.read_text(), what="the worker")
        with durable.Engine(db, workers=0) as engine:
            handle = engine.start(dx_app.napping.options(workflow_id="N-1"), "N-1")
            assert handle.result(timeout=30) == "receipt-N-1-5"
        wait_until(lambda: '"finished"' in log.read_text() or '"success"' in log.read_text(),
                   what="the finish line")
    finally:
        worker.terminate()
        worker.wait(30)
    records = [json.loads(line) for line in log.read_text().splitlines()
               if line.startswith("{")]
    mine = [r for r in records if r.get("workflow_id") == "N-1"]
    events = [r["event"] for r in mine]
    assert "suspended" in events and "resumed" in events and "success" in events, events
    assert "step.completed" in events  # DEBUG: a line per step
    for record in mine:
        assert record["workflow_name"] == "dxapp.napping" and isinstance(record["call"], int)
    finished = next(r for r in mine if r["event"] == "success")
    assert finished["duration"] >= 0.2 and finished["level"] == "INFO"


SCRIPT = """
import sys
import durable

@durable.step
def hello(name: str) -> str:
    return "hello " + name

@durable.workflow
def greet(name: str) -> str:
    durable.sleep(3600)
    return hello(name)

if __name__ == "__main__":
    with durable.Engine(sys.argv[1], workers=0) as engine:
        engine.start(greet, "ann")
"""


def test_a_script_run_as_main_is_warned_and_its_worker_says_what_to_do(tmp_path: Path) -> None:
    script = tmp_path / "greeter.py"
    script.write_text(SCRIPT)
    db = tmp_path / "greet.db"
    ran = subprocess.run([sys.executable, str(script), str(db)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "MainModuleName" in ran.stderr
    assert "@durable.step(name=\"greeter.hello\")" in ran.stderr  # the first one defined
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "durable", "worker", str(script), "--db", str(db)],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        wait_until(lambda: "durable worker (pid" in log.read_text(), what="the worker")
    finally:
        worker.terminate()
        worker.wait(30)
    text = log.read_text()
    assert "'__main__.greet'" in text and "module 'greeter'" in text
    assert '@durable.workflow(name="__main__.greet")' in text


def test_replay_break_at_works_on_an_exported_file_too(tmp_path: Path) -> None:
    db, marker = tmp_path / "shop.db", tmp_path / "charged.txt"
    _finished_checkout(db, marker)
    run_json = tmp_path / "run.json"
    run_json.write_text(run_cli("export", "A-1", "--db", str(db)).stdout)
    done = run_cli("replay", "--from-file", str(run_json), "-m", APP, "--break-at", "2",
                   stdin="p fee\nc\n", env={"DXAPP_MARKER": str(marker)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'receipt-A-1-1'" in done.stdout  # call #2's recorded value, in the frame
    assert marker.read_text().splitlines() == ["charged 4200", "charged 1"]
