"""Issue 10, store and file safety: sqlite errors as durable errors, a savepoint per
request, real conflicts only fence, no WAL spin, application_id, read-only inspection,
0600 files, the demo's file, and payloads that never unpickle in a reader."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import durable
from durable.cli import cli
from durable.errors import (
    InvalidArgument,
    NotADurableDatabase,
    PickleRefused,
    StorageError,
    WorkflowFailed,
)
from durable.store import Fenced, NewEvent, StorageFailed
from durable.store import sqlite_connect as connecting
from tests.conftest import wait_until

DURA = 0x64757261
SURROGATE = "bad-\udc80-id"


@durable.step
def add(a: int, b: int) -> int:
    return a + b


@durable.workflow
def many_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total = add(total, i)
    return total


@durable.workflow
def sets_state(key: Any) -> str:
    durable.state[key] = 1
    return "set"


@durable.workflow
def waits_for(name: Any) -> Any:
    return durable.wait_for_signal(name, timeout=30)


@durable.workflow
def publishes(key: Any, value: Any, allow_pickle: bool) -> str:
    durable.set_event(key, value, allow_pickle=allow_pickle)
    return "published"


@durable.workflow
def publishes_evil(marker: str) -> str:
    durable.set_event("k", Evil(marker), allow_pickle=True)
    return "published"


class Order(BaseModel):
    order_id: str
    cents: int


class Evil:
    """Unpickling it runs a command: the payload of an attack through a signal."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def journal_mode(path: str) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def foreign_db(path: str) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()
    return path


def old_durable_db(path: str) -> str:
    """A durable database as an older durable left it: no application_id, and (for the
    read-only tests) back in the rollback journal mode."""
    with durable.Engine(path, workers=0) as engine:
        engine.start(many_steps, 1, workflow_id="old")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA application_id = 0")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return path


# -- sqlite errors as durable errors ----------------------------------------------------


def test_ids_and_names_that_cannot_be_stored_are_invalid_arguments(
        engine: durable.Engine) -> None:
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        engine.start(many_steps, 1, workflow_id=SURROGATE)
    engine.start(waits_for, "go", workflow_id="w")
    with pytest.raises(InvalidArgument, match="must be a str"):
        engine.send_signal("w", b"go")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="must be a str"):
        engine.send_signal("w", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        engine.send_signal("w", SURROGATE)
    with pytest.raises(InvalidArgument):  # a read with such an id: no UnicodeEncodeError
        engine.row(SURROGATE)


@pytest.mark.parametrize("workflow, argument", [
    (sets_state, None), (sets_state, ["k", 1]), (waits_for, None), (publishes, None),
])
def test_bad_names_inside_a_workflow_fail_it_with_invalid_argument(
        engine: durable.Engine, workflow: durable.Workflow[..., Any], argument: Any) -> None:
    args = (argument, 1, False) if workflow is publishes else (argument,)
    if workflow is sets_state and isinstance(argument, list):
        args = (tuple(argument),)  # a tuple key, as in state[("k", 1)] = 1
    handle = engine.start(workflow, *args)
    with pytest.raises(WorkflowFailed) as failed:
        handle.result(timeout=10)
    assert isinstance(failed.value.__cause__, InvalidArgument) or "InvalidArgument" in str(
        failed.value)


def test_the_store_maps_a_bad_id_it_is_handed_to_invalid_argument(
        engine: durable.Engine) -> None:
    from durable.runtime.rows import new_row, started_event

    row = new_row(many_steps, SURROGATE, (1,), {}, time.time())
    with pytest.raises(InvalidArgument):
        engine.store.create_workflow(row, [started_event(many_steps, row, (1,), {})])


def test_one_bad_request_in_a_group_commit_fails_only_itself(db: str) -> None:
    """Starts with an id the database cannot store, sent straight to the store while
    workflows run: they share group commits with the workflows' appends."""
    from durable.runtime.rows import new_row, started_event

    with durable.Engine(db, workers=8, synchronous="full", poll_interval=0.01) as engine:
        handles = [engine.start(many_steps, 40, workflow_id=f"good-{i}") for i in range(8)]
        errors: list[BaseException] = []

        def bad_starts() -> None:
            for i in range(200):
                row = new_row(many_steps, f"{SURROGATE}{i}", (1,), {}, time.time())
                try:
                    engine.store.create_workflow(row, [started_event(many_steps, row, (1,), {})])
                except BaseException as error:
                    errors.append(error)

        threads = [threading.Thread(target=bad_starts) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [h.result(timeout=30) for h in handles] == [sum(range(40))] * 8
        assert len(errors) == 800
        assert {type(e) for e in errors} == {InvalidArgument}


def test_only_a_real_position_or_owner_conflict_fences(engine: durable.Engine) -> None:
    engine.close()
    with durable.Engine(engine.path, workers=0) as client:
        client.start(many_steps, 1, workflow_id="w")
        claimed = client.store.claim("me", time.time(), time.time() + 60, 1)
        assert [r.workflow_id for r in claimed] == ["w"]
        # A value the log cannot hold is a bad argument, not "owned by another executor".
        with pytest.raises(InvalidArgument):
            client.store.append("w", "me", [NewEvent(1, 1, "step.completed", None)])  # type: ignore[arg-type]
        client.store.append("w", "me", [NewEvent(1, 1, "step.completed", "add")])
        with pytest.raises(Fenced):  # the position is taken: another executor wrote it
            client.store.append("w", "me", [NewEvent(1, 1, "step.completed", "add")])
        with pytest.raises(Fenced):  # not the owner
            client.store.append("w", "other", [NewEvent(2, 2, "step.completed", "add")])


# -- no WAL spin ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [":memory:", "", "file::memory:?cache=shared"])
def test_an_in_memory_database_is_refused_at_once_with_the_fix(path: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="temporary folder") as raised:
        durable.Engine(path, workers=0)
    assert time.monotonic() - started < 1
    assert "other processes" in str(raised.value)
    assert "durable.testing" in str(raised.value)


def test_a_file_that_stays_locked_in_another_journal_mode_gives_storage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = old_durable_db(str(tmp_path / "app.db"))
    monkeypatch.setattr(connecting, "WAL_SWITCH_TIMEOUT_S", 0.5)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN")
    other.execute("SELECT count(*) FROM workflows").fetchone()  # a reader holds it
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match="WAL"):
            durable.Engine(path, workers=0)
        assert time.monotonic() - started < 5
    finally:
        other.execute("COMMIT")
        other.close()
    assert journal_mode(path) == "delete"


# -- only its own files -------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_new_database_is_stamped_with_durables_application_id(db: str) -> None:
    durable.Engine(db, workers=0).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == DURA
    conn.close()


def test_another_programs_database_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    path = foreign_db(str(tmp_path / "app.db"))
    before = digest(path)
    with pytest.raises(NotADurableDatabase, match="customers"):
        durable.Engine(path, workers=2)
    result = CliRunner().invoke(cli, ["list", "--db", path])
    assert result.exit_code == 2 and "not a durable database" in result.output
    assert digest(path) == before
    assert journal_mode(path) == "delete"
    assert sorted(os.listdir(tmp_path)) == ["app.db"]


def test_a_database_with_another_application_id_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "other.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    before = digest(path)
    with pytest.raises(NotADurableDatabase, match="application_id"):
        durable.Engine(path, workers=0)
    assert digest(path) == before


def test_an_older_durable_database_is_adopted_and_stamped(tmp_path: Path) -> None:
    path = old_durable_db(str(tmp_path / "old.db"))
    with durable.Engine(path, workers=2, poll_interval=0.01) as engine:
        assert engine.handle("old").result(timeout=10) == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == DURA
    conn.close()


def test_inspection_commands_open_the_file_read_only(tmp_path: Path) -> None:
    path = old_durable_db(str(tmp_path / "old.db"))
    before = digest(path)
    runner = CliRunner()
    for command in (["list"], ["show", "old"], ["history", "old"],
                    ["replay", "old", "-m", __name__], ["check", __name__]):
        result = runner.invoke(cli, [*command, "--db", path])
        assert result.exit_code in (0, 1), (command, result.output)
    assert digest(path) == before  # no migration, no stamp, no switch to WAL
    assert journal_mode(path) == "delete"
    assert sorted(os.listdir(tmp_path)) == ["old.db"]


def test_a_read_only_engine_refuses_writes_with_storage_error(db: str) -> None:
    durable.Engine(db, workers=0).close()
    with durable.Engine(db, workers=0, read_only=True) as engine:
        assert engine.list_workflows() == []
        with pytest.raises(StorageError, match="readonly|read-only"):
            engine.start(many_steps, 1)
    with pytest.raises(InvalidArgument, match="workers=0"):
        durable.Engine(db, workers=2, read_only=True)


@pytest.mark.sqlite_only
def test_database_wal_and_shm_files_are_created_0600(db: str) -> None:
    old = os.umask(0o022)
    try:
        with durable.Engine(db, workers=2) as engine:
            engine.run(many_steps, 2)
            modes = {suffix: stat.S_IMODE(os.stat(db + suffix).st_mode)
                     for suffix in ("", "-wal", "-shm")}
    finally:
        os.umask(old)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_demo_never_deletes_a_file_it_did_not_create(tmp_path: Path) -> None:
    app = foreign_db(str(tmp_path / "app.db"))
    before = digest(app)
    result = CliRunner().invoke(cli, ["demo", "--db", app])
    assert result.exit_code == 2 and "not a demo database" in result.output
    assert digest(app) == before and journal_mode(app) == "delete"
    empty = str(tmp_path / "empty.db")  # a durable database, but not the demo's
    durable.Engine(empty, workers=0).close()
    result = CliRunner().invoke(cli, ["demo", "--db", empty])
    assert result.exit_code == 2 and "not a demo database" in result.output
    assert os.path.exists(empty)


# -- payloads: JSON unless pickle is allowed; readers never unpickle ----------------------


def test_a_signal_that_needs_pickle_is_refused_unless_allowed(
        engine: durable.Engine, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    handle = engine.start(waits_for, "go", workflow_id="w")
    with pytest.raises(PickleRefused, match="allow_pickle=True"):
        handle.signal("go", Evil(str(marker)))
    with pytest.raises(PickleRefused):
        engine.send_signal("w", "go", {1, 2})
    assert engine.store.signals("w") == []  # nothing was sent
    handle.signal("go", Order(order_id="A-1", cents=42))  # pydantic: JSON, read as a dict
    assert handle.result(timeout=10) == {"order_id": "A-1", "cents": 42}
    assert not marker.exists()


def test_published_events_are_json_unless_pickle_is_allowed(engine: durable.Engine) -> None:
    with pytest.raises(WorkflowFailed, match="allow_pickle"):
        engine.run(publishes, "k", {1, 2}, False)
    handle = engine.start(publishes, "k", {1, 2}, True)
    assert handle.result(timeout=10) == "published"
    assert handle.get_event("k") == {1, 2}


def test_show_and_history_never_unpickle(engine: durable.Engine, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    handle = engine.start(publishes_evil, str(marker), workflow_id="evil")
    handle.result(timeout=10)
    marker.unlink(missing_ok=True)  # the worker may read back what it records: by design
    runner = CliRunner()
    history = runner.invoke(cli, ["history", "evil", "--db", engine.path])
    shown = runner.invoke(cli, ["history", "evil", "--json", "--db", engine.path])
    show = runner.invoke(cli, ["show", "evil", "--db", engine.path])
    assert history.exit_code == shown.exit_code == show.exit_code == 0
    assert "<pickle:" in history.output and "bytes>" in shown.output
    events = engine.history("evil")
    assert any(isinstance(e.value, str) and e.value.startswith("<pickle: ") for e in events)
    assert not marker.exists()


def test_heartbeat_renews_only_the_workflows_this_engine_runs(db: str) -> None:
    with durable.Engine(db, workers=0) as client:
        client.start(many_steps, 1, workflow_id="held")
    engine = durable.Engine(db, workers=1, lease=1.5, poll_interval=0.01)
    # Held under this engine's owner id but not run by it (as after a failed release).
    [row] = engine.store.claim(engine.owner, time.time(), time.time() + 1.5, 10)
    with engine:
        time.sleep(1.1)  # two heartbeats (every 0.5 s), before the lease ends
        assert engine.row("held").lease_until == row.lease_until
        assert engine.handle("held").result(timeout=10) == 0  # taken up once it ended


class FailingAppends:
    """A store whose first ``failures`` appends fail in the storage (as on a full disk)."""

    def __init__(self, store: Any, failures: int) -> None:
        self.store, self.failures = store, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def append(self, workflow_id: str, owner: str, events: list[NewEvent],
               **options: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise StorageFailed(workflow_id, StorageError(
                self.store.path, "recording events", "database or disk is full (SQLITE_FULL)",
                "Free disk space."))
        return self.store.append(workflow_id, owner, events, **options)


def test_a_storage_error_releases_the_workflow_for_a_retry_with_backoff(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable.engine import worker

    monkeypatch.setattr(worker, "STORAGE_RETRY_FIRST", 0.2)
    # A lease far longer than the test: only a release lets the workflow run again.
    engine = durable.Engine(db, workers=2, lease=60, poll_interval=0.01)
    engine.store = FailingAppends(engine.store, 3)
    with engine:
        handle = engine.start(many_steps, 3, workflow_id="w")
        def released() -> bool:
            row = engine.row("w")
            return row.owner is None and "storage error" in (row.waiting or "")

        wait_until(released, what="the release after a storage error")
        assert handle.result(timeout=10) == 3
        assert engine.row("w").recoveries == 0  # a storage error is not the workflow's fault


class FailingSignalRead(FailingAppends):
    """A store whose first read of a signal fails in the storage (an I/O error)."""

    def append(self, workflow_id: str, owner: str, events: list[NewEvent],
               **options: Any) -> Any:
        return self.store.append(workflow_id, owner, events, **options)

    def next_signal(self, workflow_id: str, name: str) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise StorageError(self.store.path, "a read", "disk I/O error (SQLITE_IOERR)",
                               "Check the disk.")
        return self.store.next_signal(workflow_id, name)


def test_a_failed_read_inside_a_run_is_retried_not_recorded_as_a_failure(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable.engine import worker

    monkeypatch.setattr(worker, "STORAGE_RETRY_FIRST", 0.05)
    engine = durable.Engine(db, workers=2, lease=60, poll_interval=0.01)
    engine.store = FailingSignalRead(engine.store, 1)
    with engine:
        handle = engine.start(waits_for, "go", workflow_id="w")
        handle.signal("go", "payload")
        assert handle.result(timeout=10) == "payload"


class NoWalConnection:
    """A connection whose file cannot use WAL: SQLite answers with the old journal mode
    (as on a file system without shared memory), no error."""

    def __init__(self) -> None:
        self.attempts = 0

    def execute(self, sql: str) -> Any:
        if sql == "PRAGMA journal_mode = WAL":
            self.attempts += 1
        return self

    def fetchone(self) -> tuple[str]:
        return ("delete",)


def test_a_file_that_answers_another_journal_mode_gives_storage_error_not_a_spin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connecting, "WAL_REFUSED_S", 0.2)
    conn = NoWalConnection()
    started = time.monotonic()
    with pytest.raises(StorageError, match="stays 'delete'"):
        connecting.use_wal(conn, "app.db")  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert conn.attempts < 200  # it waited between attempts
