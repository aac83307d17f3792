"""The stores under load: group commit (both stores) and the preallocated WAL (SQLite)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import durable
from durable.store import Fenced, NewEvent
from durable.store import sqlite as store_sqlite
from durable.store.sqlite_connect import WAL_PREALLOCATE
from tests.conftest import execute_sql

THREADS = 16
APPENDS = 40


@durable.workflow(name="store.wf")
def hold(n: int) -> int:
    return n


def _started(engine: durable.Engine, count: int) -> list[str]:
    ids = [f"w{i}" for i in range(count)]
    for workflow_id in ids:
        engine.start(hold, 0, workflow_id=workflow_id)
        # Owned by this test, not by a worker: the appends below are ours to make.
        execute_sql(engine.path, "UPDATE workflows SET owner = 'tester', status = 'RUNNING' "
                    "WHERE workflow_id = ?", (workflow_id,))
    return ids


def _store_class(db: str) -> type:
    if db.startswith("postgresql://"):
        from durable.store.postgres import PostgresStore

        return PostgresStore
    return store_sqlite.SQLiteStore


def test_appends_from_many_threads_share_commits_and_each_is_recorded_once(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    store_class = _store_class(db)
    original = store_class._commit

    def counting(self: object, batch: list) -> None:  # type: ignore[type-arg]
        commits.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(store_class, "_commit", counting)
    with durable.Engine(db, workers=0) as engine:
        ids = _started(engine, THREADS)
        commits.clear()
        barrier = threading.Barrier(THREADS)
        errors: list[BaseException] = []

        def appender(workflow_id: str) -> None:
            barrier.wait()
            try:
                for n in range(APPENDS):
                    engine.store.append(workflow_id, "tester",
                                        [NewEvent(n + 1, n + 1, "value", "now", payload="1")])
            except BaseException as error:  # reported below, not lost in the thread
                errors.append(error)

        threads = [threading.Thread(target=appender, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        for workflow_id in ids:
            assert [e.position for e in engine.history(workflow_id)] == list(range(APPENDS + 1))
    assert sum(commits) == THREADS * APPENDS
    assert len(commits) < THREADS * APPENDS  # some commits carried several appends


@pytest.mark.parametrize("conflict", [False, True])
def test_fenced_appends_in_a_shared_commit_fail_alone(db: str, conflict: bool) -> None:
    # w3 is appended to by a stranger; w5 (with conflict) at a position the log holds.
    fenced = ("w3", "w5") if conflict else ("w3",)
    with durable.Engine(db, workers=0) as engine:
        ids = _started(engine, 8)
        barrier = threading.Barrier(len(ids))
        outcomes: dict[str, str] = {}

        def appender(workflow_id: str) -> None:
            owner = "intruder" if workflow_id == "w3" else "tester"
            position = 0 if conflict and workflow_id == "w5" else 1
            barrier.wait()
            try:
                engine.store.append(workflow_id, owner,
                                    [NewEvent(position, 1, "value", "now", payload="2")])
                outcomes[workflow_id] = "ok"
            except Fenced:
                outcomes[workflow_id] = "fenced"

        threads = [threading.Thread(target=appender, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert outcomes == {i: "fenced" if i in fenced else "ok" for i in ids}
        for workflow_id in ids:
            kinds = [e.kind for e in engine.history(workflow_id)]
            assert kinds == (["workflow.started"] if workflow_id in fenced
                             else ["workflow.started", "value"])


def test_appends_after_close_are_refused(db: str) -> None:
    engine = durable.Engine(db, workers=0)
    engine.open()
    (workflow_id,) = _started(engine, 1)
    engine.close()
    with pytest.raises(Fenced):
        engine.store.append(workflow_id, "tester", [NewEvent(1, 1, "value", "now")])


def test_a_full_store_opens_with_a_preallocated_wal_and_an_unchanged_database(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "full.db")
    with durable.Engine(path, synchronous="full") as engine:
        assert os.path.getsize(path + "-wal") >= WAL_PREALLOCATE
        assert engine.run(hold, 7) == 7
        tables = {r[0] for r in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "durable_wal_scratch" not in tables
    with durable.Engine(path, synchronous="full") as engine:  # and it opens again
        assert [w.status for w in engine.list_workflows()] == ["SUCCESS"]


@pytest.mark.parametrize("synchronous, workers", [("normal", 2), ("full", 0)])
def test_a_normal_store_or_a_client_does_not_grow_its_wal(
    tmp_path: Path, synchronous: str, workers: int
) -> None:
    path = str(tmp_path / "small.db")
    with durable.Engine(path, synchronous=synchronous, workers=workers):
        assert os.path.getsize(path + "-wal") < WAL_PREALLOCATE


def test_a_leader_interrupted_in_its_commit_leaves_nobody_waiting(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_class = _store_class(db)
    original = store_class._commit
    interrupted = threading.Event()

    def interrupt_once(self: object, batch: list) -> None:  # type: ignore[type-arg]
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt  # as Ctrl-C would, in the main thread
        original(self, batch)

    with durable.Engine(db, workers=0) as engine:
        ids = _started(engine, 2)
        monkeypatch.setattr(store_class, "_commit", interrupt_once)
        with pytest.raises(KeyboardInterrupt):
            engine.store.append(ids[0], "tester", [NewEvent(1, 1, "value", "now")])
        assert [e.kind for e in engine.history(ids[0])] == ["workflow.started"]
        later = threading.Thread(target=engine.store.append,
                                 args=(ids[1], "tester", [NewEvent(1, 1, "value", "now")]))
        later.start()
        later.join(10)
        assert not later.is_alive(), "the next append waits for a leader that is gone"
        assert [e.kind for e in engine.history(ids[1])] == ["workflow.started", "value"]


def test_a_busy_database_opens_at_once_without_a_preallocated_wal(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.db")
    with durable.Engine(path, synchronous="full", workers=0) as engine:
        engine.start(hold, 1, workflow_id="before")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        engine = durable.Engine(path, synchronous="full", workers=1)
        assert time.monotonic() - started < 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    with engine:
        engine.start(hold, 2, workflow_id="after")
        assert {w.workflow_id for w in engine.list_workflows()} == {"before", "after"}


def test_a_run_read_while_appends_commit_out_of_order_misses_none_of_them(db: str) -> None:
    with durable.Engine(db, workers=0) as engine, durable.Engine(db, workers=0) as other:
        (workflow_id,) = _started(engine, 1)

        def read() -> list[int]:
            return [e.position for e in engine.store.events(workflow_id, 1)]

        def append(position: int, store: object = engine.store) -> None:
            event = NewEvent(position, position, "value", "now", payload="1")
            store.append(workflow_id, "tester", [event])  # type: ignore[attr-defined]

        assert read() == [0]
        append(2)  # committed before position 1, as a parallel step's append can be
        assert read() == [0, 2]
        append(1)
        assert read() == [0, 1, 2]
        append(3, other.store)  # another process's connection
        assert read() == [0, 1, 2, 3]
        assert [e.position for e in engine.store.events(workflow_id)] == [0, 1, 2, 3]


@pytest.mark.sqlite_only
def test_reads_do_not_wait_for_a_commit_in_progress(db: str) -> None:
    with durable.Engine(db, workers=0) as engine:
        (workflow_id,) = _started(engine, 1)
        committing, done = threading.Event(), threading.Event()

        def slow_commit() -> None:  # holds the writing connection, as a commit's fsync does
            with engine.store._lock:
                committing.set()
                done.wait(10)

        thread = threading.Thread(target=slow_commit)
        thread.start()
        try:
            assert committing.wait(10)
            t0 = time.monotonic()
            row = engine.store.workflow(workflow_id)
            events = engine.store.events(workflow_id, 1)
            assert time.monotonic() - t0 < 5
            assert row is not None and row.workflow_id == workflow_id
            assert [e.kind for e in events] == ["workflow.started"]
        finally:
            done.set()
            thread.join()
