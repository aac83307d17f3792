"""Retry as a new run, prune, start_many, signal-with-start and the operating commands,
with real worker processes where the issue asks for them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import durable
from durable.cli import cli
from tests.conftest import execute_sql, wait_until
from tests.integration._queue_procs import Workers, effects

sys.path.insert(0, str(Path(__file__).parent))
from apps import queued  # named as the workers name it: apps.queued

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def effects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Steps run in this process (not only in workers) write their effects here too."""
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects"))
    return tmp_path / "effects"


@pytest.fixture
def workers(db: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(db, tmp_path / "effects", tmp_path, "apps.queued")
    yield pool
    pool.close()


@pytest.fixture
def client(db: str) -> Iterator[durable.Engine]:
    with durable.Engine(db, workers=0, synchronous="normal", poll_interval=0.01) as engine:
        yield engine


def durable_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m durable ARGS`` in its own process, from the folder of the test apps."""
    return subprocess.run([sys.executable, "-m", "durable", *args], capture_output=True,
                          text=True, timeout=120, cwd=HERE, input=stdin)


def status(client: durable.Engine, workflow_id: str) -> durable.Status:
    return client.handle(workflow_id).status()


# -- retry --------------------------------------------------------------------------


def test_retry_runs_a_failed_workflow_again_without_repeating_recorded_effects(
    workers: Workers, client: durable.Engine, db: str, tmp_path: Path
) -> None:
    flag = tmp_path / "bug"
    flag.touch()
    workers.spawn()
    started = durable_cli("start", "apps.queued:fragile", f'"{flag}"', "--id", "order-1",
                          "--db", db)
    assert started.returncode == 0, started.stderr
    wait_until(lambda: status(client, "order-1") == durable.Status.FAILURE, timeout=30,
               what="the first run to fail")
    flag.unlink()  # the fix is deployed
    retried = durable_cli("retry", "order-1", "--db", db)
    assert retried.returncode == 0, retried.stderr
    assert "run 2" in retried.stdout
    assert client.handle("order-1").result(timeout=30) == ["charge", "reserve", "passed", "ship"]
    done = [(w[0], w[1]) for w in effects(workers.effects)]
    # Recorded calls ran once; the failed step ran again with a key of its own run.
    assert done == [("charge", "order-1:1"), ("reserve", "order-1:2"), ("gate", "order-1:3"),
                    ("gate", "order-1:2:3"), ("ship", "order-1:2:4")]
    runs = [e.kind for e in client.history("order-1")]
    assert runs.count("workflow.started") == 2 and "workflow.failed" in runs  # old run kept
    assert client.row("order-1").run == 2


def test_retry_refuses_a_workflow_that_did_not_fail(engine: durable.Engine) -> None:
    handle = engine.start(queued.job, "ok", 0.0)
    handle.result(timeout=10)
    with pytest.raises(durable.errors.NotRetryable, match="SUCCESS"):
        engine.retry(handle.workflow_id)


def test_retry_of_a_cancelled_workflow_continues_where_it_stopped(
    engine: durable.Engine,
) -> None:
    handle = engine.start(queued.waits_for_go)
    wait_until(lambda: handle.status() == durable.Status.WAITING)
    handle.cancel()
    with pytest.raises(durable.errors.WorkflowCancelled):
        handle.result(timeout=10)
    engine.retry(handle.workflow_id)
    engine.send_signal(handle.workflow_id, "go", "late")
    assert handle.result(timeout=10) == "late"


# -- prune --------------------------------------------------------------------------


def test_prune_deletes_finished_workflows_and_leaves_unfinished_work_intact(
    workers: Workers, client: durable.Engine, db: str
) -> None:
    workers.spawn()
    done = [client.start(queued.job, f"d{i}", 0.0) for i in range(3)]
    client.start(queued.waits_for_go, workflow_id="waiting")
    parent = client.start(queued.parent_leaves_child, "x", workflow_id="parent")
    assert parent.result(timeout=30) == "done"
    child = "parent/call-1"
    wait_until(lambda: all(h.status().finished for h in done), timeout=30)
    wait_until(lambda: status(client, child) == durable.Status.WAITING, timeout=30)
    pruned = durable_cli("prune", "--older-than", "0s", "--yes", "--db", db)
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 3 workflow(s)" in pruned.stdout
    left = {w.workflow_id for w in client.list_workflows()}
    assert left == {"waiting", "parent", child}  # a finished parent of unfinished work stays
    with pytest.raises(durable.errors.WorkflowNotFound):
        client.history(done[0].workflow_id)
    client.send_signal(child, "go", 1)
    wait_until(lambda: status(client, child) == durable.Status.SUCCESS, timeout=30)
    assert client.prune(older_than=timedelta(0)) == 2
    assert {w.workflow_id for w in client.list_workflows()} == {"waiting"}
    client.send_signal("waiting", "go", 2)
    assert client.handle("waiting").result(timeout=30) == "2"
    assert client.prune(timedelta(hours=1)) == 0  # it ended just now


def test_the_log_still_refuses_any_other_delete(engine: durable.Engine, db: str) -> None:
    finished = engine.start(queued.job, "f", 0.0)
    finished.result(timeout=10)
    unfinished = engine.start(queued.waits_for_go)
    wait_until(lambda: unfinished.status() == durable.Status.WAITING)
    refused: type[Exception] = sqlite3.IntegrityError
    if db.startswith("postgresql://"):
        import psycopg

        refused = psycopg.errors.RaiseException
    for workflow_id in (finished.workflow_id, unfinished.workflow_id):
        with pytest.raises(refused, match="append-only"):
            execute_sql(db, "DELETE FROM events WHERE workflow_id = ?", (workflow_id,))
    # Naming an unfinished workflow for pruning does not let its events go either.
    execute_sql(db, "INSERT INTO pruning VALUES (?)", (unfinished.workflow_id,))
    with pytest.raises(refused, match="append-only"):
        execute_sql(db, "DELETE FROM events WHERE workflow_id = ?", (unfinished.workflow_id,))
    execute_sql(db, "DELETE FROM pruning")
    assert len(engine.history(unfinished.workflow_id)) >= 1
    assert len(engine.history(finished.workflow_id)) >= 1


def test_prune_works_in_batches(engine: durable.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable.engine import operations

    monkeypatch.setattr(operations, "PRUNE_BATCH", 4)
    handles = engine.start_many(queued.job, [(f"b{i}", 0.0) for i in range(10)])
    for handle in handles:
        handle.result(timeout=10)
    calls = []
    real = engine.store.prune
    monkeypatch.setattr(engine.store, "prune", lambda *a: calls.append(real(*a)) or calls[-1])
    assert engine.prune(timedelta(0), status="SUCCESS") == 10
    assert calls == [4, 4, 2]
    with pytest.raises(durable.errors.InvalidArgument, match="only finished"):
        engine.prune(timedelta(0), status="RUNNING")


# -- start_many and signal-with-start ----------------------------------------------------


def test_start_many_starts_all_in_one_go_and_returns_existing_ids(
    engine: durable.Engine,
) -> None:
    engine.start(queued.job, "old", 0.0, workflow_id="many-1")
    handles = engine.start_many(queued.job, [("new-0", 0.0), "new-1", ("new-2",)],
                                workflow_ids=["many-0", "many-1", "many-2"])
    assert [h.result(timeout=10) for h in handles] == ["new-0", "old", "new-2"]
    with pytest.raises(durable.errors.InvalidArgument, match="one id per start"):
        engine.start_many(queued.job, ["a"], workflow_ids=["x", "y"])
    with pytest.raises(durable.errors.WorkflowConflict):
        engine.start_many(queued.fragile, ["f"], workflow_ids=["many-0"])


def test_signal_with_start_starts_once_and_delivers_every_signal_under_concurrent_callers(
    db: str,
) -> None:
    callers = 8
    barrier = threading.Barrier(callers)
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        try:
            with durable.Engine(db, workers=0) as engine:
                barrier.wait()
                engine.start(queued.collect, callers, workflow_id="inbox", signal=("item", i))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        assert sorted(engine.handle("inbox").result(timeout=30)) == list(range(callers))
        kinds = [e.kind for e in engine.history("inbox")]
        assert kinds.count("workflow.started") == 1
        assert [s[3] is not None for s in engine.store.signals("inbox")] == [True] * callers
        with pytest.raises(durable.errors.WorkflowFinished):
            engine.start(queued.collect, callers, workflow_id="inbox", signal=("item", 99))


# -- the commands -------------------------------------------------------------------------


def test_bulk_cancel_counts_asks_and_cancels_every_match(db: str) -> None:
    with durable.Engine(db, workers=0) as engine:
        for i in range(3):
            engine.start(queued.job, f"q{i}", queue="nobody-serves-this")
        engine.start(queued.waits_for_go, workflow_id="other")
    runner = CliRunner()
    refused = runner.invoke(cli, ["cancel", "--status", "ENQUEUED", "--db", db], input="n\n")
    assert "cancel 3 workflow(s) matching --status ENQUEUED?" in refused.output
    assert refused.exit_code != 0
    done = runner.invoke(cli, ["cancel", "--status", "enqueued", "--yes", "--db", db])
    assert done.exit_code == 0, done.output
    assert "cancel: 3 of 3 workflow(s)" in done.output
    with durable.Engine(db, workers=0) as engine:
        assert engine.handle("other").status() == durable.Status.PENDING
        assert len(engine.list_workflows(status="CANCELLED")) == 3
    both = runner.invoke(cli, ["pause", "other", "--name", "x", "--db", db])
    assert both.exit_code == 2 and "not both" in both.output
    neither = runner.invoke(cli, ["resume", "--db", db])
    assert neither.exit_code == 2 and "--status/--name" in neither.output


def test_the_schedules_command_lists_next_due_times(db: str) -> None:
    with durable.Engine(db, workers=0) as engine:
        engine.schedule("nightly", "0 2 * * *", queued.job, timezone="Europe/Berlin")
    listed = CliRunner().invoke(cli, ["schedules", "--db", db])
    assert listed.exit_code == 0, listed.output
    assert "nightly" in listed.output and "0 2 * * *" in listed.output
    assert "Europe/Berlin" in listed.output and "engine.schedule" in listed.output
    assert ":00:00" in listed.output  # the next due time


def test_durable_start_refuses_what_it_cannot_start(db: str) -> None:
    bad = durable_cli("start", "apps.queued", "--db", db)
    assert bad.returncode == 2 and "MODULE:WORKFLOW" in bad.stderr
    missing = durable_cli("start", "apps.queued:nothing", "--db", db)
    assert missing.returncode == 2 and "no workflow 'nothing'" in missing.stderr


def test_signal_with_start_to_an_id_of_another_workflow_queues_nothing(
    engine: durable.Engine,
) -> None:
    engine.start(queued.waits_for_go, workflow_id="taken")
    with pytest.raises(durable.errors.WorkflowConflict):
        engine.start(queued.collect, 1, workflow_id="taken", signal=("item", 1))
    assert engine.store.signals("taken") == []


def test_a_cancel_before_any_worker_took_a_workflow_ends_it_at_once(db: str) -> None:
    with durable.Engine(db, workers=0) as client:
        pending = client.start(queued.job, "never", 0.0)
        assert pending.status() == durable.Status.PENDING
        pending.cancel()
        assert pending.status() == durable.Status.CANCELLED
    with durable.Engine(db, workers=2, poll_interval=0.01) as engine:
        with pytest.raises(durable.errors.WorkflowCancelled):
            engine.handle(pending.workflow_id).result(timeout=10)
        assert [e.kind for e in engine.history(pending.workflow_id)] == [
            "workflow.started", "workflow.cancelled"]


def test_durable_start_creates_the_database_and_enqueues(tmp_path: Path) -> None:
    db = str(tmp_path / "new.db")
    started = durable_cli("start", "apps.queued:job", '"cli"', "0", "--id", "c1",
                          "--queue", "ordered", "--priority", "2", "--db", db)
    assert started.returncode == 0, started.stderr
    assert "started c1 (apps.queued.job, ENQUEUED)" in started.stdout
    with durable.Engine(db, workers=0) as client:
        row = client.row("c1")
    assert (row.queue, row.priority) == ("ordered", 2)


def test_retry_of_a_diverged_workflow_keeps_the_calls_before_the_divergence(
    engine: durable.Engine, effects_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = engine.start(queued.changing, workflow_id="changing")
    wait_until(lambda: handle.status() == durable.Status.WAITING)
    monkeypatch.setattr(queued, "VERSION", [2])  # a deploy that changes call 2
    handle.signal("go")
    wait_until(lambda: engine.row("changing").error is not None, what="the divergence")
    with pytest.raises(durable.errors.NonDeterminismError):
        handle.result(timeout=1)
    engine.retry("changing")
    assert handle.result(timeout=10) == ["first", "new-second"]
    assert [(w[0], w[1]) for w in effects(effects_file)] == [
        ("first", "changing:1"), ("old-second", "changing:2"), ("new-second", "changing:2:2")]


def test_signal_with_start_payloads_are_json_as_with_send_signal(engine: durable.Engine) -> None:
    with pytest.raises(durable.errors.SerializationError):
        engine.start(queued.collect, 1, workflow_id="json-only", signal=("item", object()))
    with pytest.raises(durable.errors.WorkflowNotFound):
        engine.handle("json-only")  # nothing was started either


def test_durable_show_tells_the_queue(db: str) -> None:
    with durable.Engine(db, workers=0) as engine:
        engine.start(queued.job, "s", queue="ordered", priority=3, dedup_id="d-1",
                     workflow_id="shown")
    shown = CliRunner().invoke(cli, ["show", "shown", "--db", db])
    assert shown.exit_code == 0, shown.output
    assert "ENQUEUED" in shown.output and "ordered (priority 3, dedup_id d-1)" in shown.output
