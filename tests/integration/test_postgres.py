"""What only the PostgreSQL store has: many processes migrating and claiming at once,
LISTEN/NOTIFY wake-ups across processes, and real connection faults (backends killed
with pg_terminate_backend, the server restarted, a server that is not there)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

import durable
from durable.errors import InvalidArgument, StorageError
from tests.conftest import POSTGRES, execute_sql, wait_until

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(Path(__file__).parent))
from apps import effects, waiting  # noqa: E402  (registers the workflows, as workers do)


class Procs:
    """Worker processes on one PostgreSQL schema; every one is stopped at the end."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url, self.tmp_path = url, tmp_path
        self.effects_file = tmp_path / "effects"
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, *modules: str, workers: int = 4, lease: float = 2.0,
              poll: float = 0.01, **env: str) -> subprocess.Popen[str]:
        log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "worker_proc.py"), self.url,
             *(modules or ("apps.effects",)), "--workers", str(workers), "--lease", str(lease),
             "--poll", str(poll)],
            env={**os.environ, "EFFECTS": str(self.effects_file), **env},
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        log.close()
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", self.logs()
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            assert proc.wait(timeout=30) == 0, self.logs()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("worker-*.log")))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def effect_counts(self) -> collections.Counter[str]:
        text = self.effects_file.read_text() if self.effects_file.exists() else ""
        return collections.Counter(line.split()[0] for line in text.splitlines())

    def effect_pids(self) -> set[int]:
        return {int(line.split()[1]) for line in self.effects_file.read_text().splitlines()}


@pytest.fixture
def procs(pg_url: str, tmp_path: Path) -> Iterator[Procs]:
    pool = Procs(pg_url, tmp_path)
    yield pool
    pool.close()


def schema_of(url: str) -> str:
    return url.partition("?schema=")[2]


def terminate(url: str, which: str) -> int:
    """pg_terminate_backend on this schema's ``which`` connections ('listen' or 'pool')."""
    name = (f"durable listen {schema_of(url)}" if which == "listen"
            else f"durable {schema_of(url)}")
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,)).fetchall()
    return len(rows)


def listeners(url: str) -> int:
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        row = admin.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = %s",
                            (f"durable listen {schema_of(url)}",)).fetchone()
    return int(row[0]) if row else 0


def test_many_processes_opening_a_new_schema_at_once_migrate_it_exactly_once(
    pg_url: str,
) -> None:
    code = "import sys, durable; durable.Engine(sys.argv[1], workers=0).close()"
    openers = [subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE,
                                text=True) for _ in range(6)]
    for proc in openers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    applied = execute_sql(pg_url, "SELECT number, COUNT(*) FROM migrations GROUP BY number")
    from durable.store.postgres_schema import MIGRATIONS

    assert sorted(applied) == [(n, 1) for n in range(1, len(MIGRATIONS) + 1)]


def test_events_cannot_be_truncated(pg_url: str) -> None:
    with durable.Engine(pg_url, workers=2) as engine:
        engine.run(waiting.sleeper, 0, workflow_id="t")
    with pytest.raises(psycopg.Error, match="append-only: TRUNCATE refused"):
        execute_sql(pg_url, "TRUNCATE events")


def test_four_worker_processes_run_two_hundred_workflows_with_no_step_run_twice(
    procs: Procs,
) -> None:
    ids = [f"wf-{i}" for i in range(200)]
    with durable.Engine(procs.url, workers=0) as client:
        for workflow_id in ids:
            client.start(effects.chain, 3, workflow_id=workflow_id)
        for _ in range(4):
            procs.spawn(STEP_SECONDS="0.002")
        assert [client.handle(i).result(timeout=120) for i in ids] == [0 + 1 + 4] * 200
    procs.stop_all()
    assert procs.effect_counts() == {f"{i}:{c}": 1 for i in ids for c in (1, 2, 3)}
    assert len(procs.effect_pids()) > 1  # the claims were shared


def test_a_signal_wakes_a_workflow_in_another_process_without_waiting_for_the_poll(
    procs: Procs,
) -> None:
    # Both sides poll only every 30 s: anything faster came by NOTIFY.
    procs.spawn("apps.waiting", poll=30.0)
    with durable.Engine(procs.url, workers=0, poll_interval=30.0) as client:
        handle = client.start(waiting.two_signals, workflow_id="w")
        wait_until(lambda: handle.status() is durable.Status.WAITING, timeout=5)
        started = time.monotonic()
        handle.signal("a", 1)
        handle.signal("b", 2)
        assert handle.result(timeout=5) == [1, 2]
        assert time.monotonic() - started < 5


def test_the_listener_reconnects_after_its_backend_is_terminated(procs: Procs) -> None:
    procs.spawn("apps.waiting", poll=30.0)
    with durable.Engine(procs.url, workers=0, poll_interval=30.0) as client:
        handle = client.start(waiting.two_signals, workflow_id="w")
        wait_until(lambda: handle.status() is durable.Status.WAITING, timeout=5)
        wait_until(lambda: listeners(procs.url) == 2, timeout=5, what="both listeners")
        assert terminate(procs.url, "listen") == 2  # the worker's and the client's
        wait_until(lambda: listeners(procs.url) == 2, timeout=5, what="listeners back")
        handle.signal("a", 1)
        handle.signal("b", 2)
        assert handle.result(timeout=5) == [1, 2]


def test_terminated_connections_mid_run_lose_no_workflow_and_no_event(procs: Procs) -> None:
    ids = [f"wf-{i}" for i in range(30)]
    with durable.Engine(procs.url, workers=0) as client:
        for workflow_id in ids:
            client.start(effects.chain, 6, workflow_id=workflow_id)
        procs.spawn(STEP_SECONDS="0.01")
        for _ in range(4):  # every connection of the worker and the client, four times
            time.sleep(0.3)
            terminate(procs.url, "pool")
            terminate(procs.url, "listen")
        results = [client.handle(i).result(timeout=60) for i in ids]
        assert results == [sum(i * i for i in range(6))] * 30
        for workflow_id in ids:  # gapless logs: every acknowledged event is there
            positions = [e.position for e in client.history(workflow_id)]
            assert positions == list(range(len(positions)))
    procs.stop_all()
    assert set(procs.effect_counts()) == {f"{i}:{c}" for i in ids for c in range(1, 7)}


def test_an_unreachable_server_is_a_storage_error_within_the_connect_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(StorageError, match="127.0.0.1:1") as error:
        durable.Engine("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2")
    assert time.monotonic() - started < 5
    assert "opening the database" in str(error.value) and "reachable" in str(error.value)
    assert error.value.what == "opening the database"


def test_a_schema_that_is_not_a_plain_name_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="schema="):
        durable.Engine(f"{POSTGRES}?schema=x;drop")


@pytest.mark.slow
def test_a_server_restart_mid_run_strands_no_workflow(procs: Procs) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    ids = [f"wf-{i}" for i in range(40)]
    with durable.Engine(procs.url, workers=0) as client:
        for workflow_id in ids:
            client.start(effects.chain, 8, workflow_id=workflow_id)
        procs.spawn(STEP_SECONDS="0.02")
        time.sleep(0.5)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main",
                        "restart"], check=True, timeout=60)
        results = [client.handle(i).result(timeout=120) for i in ids]
        assert results == [sum(i * i for i in range(8))] * 40
        for workflow_id in ids:
            positions = [e.position for e in client.history(workflow_id)]
            assert positions == list(range(len(positions)))
    procs.stop_all()


def test_an_outage_neither_spins_the_dispatcher_nor_stops_a_timer() -> None:
    """The database refuses connections for a while (as during a restart or a failover):
    the engine retries at its poll, not in a loop, and a timer that came due meanwhile
    still fires once the database is back."""
    name = f"t_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = str(urlsplit(POSTGRES)._replace(path=f"/{name}").geturl())
    try:
        with durable.Engine(url, workers=2, poll_interval=0.2) as engine:
            handle = engine.start(waiting.sleeper, 1.0, workflow_id="nap")
            wait_until(lambda: handle.status() is durable.Status.WAITING, timeout=5)
            claims = []
            claim = engine.store.claim

            def counted(*args: object) -> object:
                claims.append(time.monotonic())
                return claim(*args)  # type: ignore[arg-type]

            engine.store.claim = counted  # type: ignore[method-assign]
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s", (name,))
                time.sleep(2.0)  # the timer comes due during the outage
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert len(claims) <= 20, f"{len(claims)} claims in a 2 s outage: a busy loop"
            assert len(handle.result(timeout=60)) == 2
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_group_commit_rolled_back_by_a_deadlock_is_tried_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from durable.store.postgres import PostgresStore

    original = PostgresStore._commit_once
    failures: list[int] = []

    def deadlock_once(self: PostgresStore, batch: list, *rest: bool) -> None:  # type: ignore[type-arg]
        if not failures:
            failures.append(len(batch))
            with self._pool.connection() as conn:  # a real error from the server
                conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$")
        original(self, batch, *rest)

    with durable.Engine(pg_url, workers=2) as engine:
        monkeypatch.setattr(PostgresStore, "_commit_once", deadlock_once)
        assert engine.run(waiting.sleeper, 0, workflow_id="d") is not None
    assert failures == [1]
    kinds = [k for (k,) in execute_sql(pg_url, "SELECT kind FROM events WHERE workflow_id = 'd' "
                                               "ORDER BY position")]
    assert kinds.count("workflow.started") == 1 and kinds[-1] == "workflow.completed"


def test_two_engines_in_one_process_wake_each_other(pg_url: str) -> None:
    # Each store ignores only its own notifications: the other engine's still wake it.
    with durable.Engine(pg_url, workers=2, poll_interval=30.0) as worker, \
            durable.Engine(pg_url, workers=0, poll_interval=30.0) as client:
        worker.list_workflows()  # open; its dispatcher now sleeps for 30 s
        wait_until(lambda: listeners(pg_url) == 2, timeout=5, what="both listeners")
        started = time.monotonic()
        handle = client.start(waiting.two_signals, workflow_id="pair")
        wait_until(lambda: handle.status() is durable.Status.WAITING, timeout=5)
        handle.signal("a", 1)
        handle.signal("b", 2)
        assert handle.result(timeout=5) == [1, 2]
        assert time.monotonic() - started < 5


def test_a_queue_concurrency_limit_holds_for_stores_dequeueing_at_once(pg_url: str) -> None:
    # Each store counts the queue's dequeued workflows under READ COMMITTED: without the
    # queue's lock, stores that count at the same moment would each see room.
    import threading

    from durable.store import QueueLimits, WorkflowRow
    from durable.store.postgres import PostgresStore

    stores = [PostgresStore(pg_url) for _ in range(6)]
    try:
        now = time.time()
        stores[0].create_workflows([(WorkflowRow(
            f"q{i}", "n", "ENQUEUED", 1, "json", None, None, None, None, None, None, None,
            None, None, None, 0, 0, None, None, now + i, now, queue="q"), []) for i in range(40)])
        limits = [QueueLimits("q", concurrency=2)]
        for _ in range(6):
            barrier = threading.Barrier(len(stores))
            claimed: list[int] = []

            def dequeue(store: PostgresStore, owner: str, barrier: threading.Barrier = barrier,
                        claimed: list[int] = claimed) -> None:
                barrier.wait()
                claimed.append(len(store.claim_queued(owner, now + 100, now + 160, 5, limits)))

            threads = [threading.Thread(target=dequeue, args=(store, f"o{i}"))
                       for i, store in enumerate(stores)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sum(claimed) == 2, claimed
            execute_sql(pg_url, "UPDATE workflows SET status = 'SUCCESS', owner = NULL "
                                "WHERE status = 'RUNNING'")
    finally:
        for store in stores:
            store.close()


def test_a_bad_append_in_a_pipelined_batch_fails_alone(pg_url: str) -> None:
    from durable.store import NewEvent, WorkflowRow
    from durable.store.postgres import PostgresStore
    from durable.store.postgres_commit import Append

    store = PostgresStore(pg_url)
    try:
        now = time.time()
        for workflow_id in ("good", "bad"):
            store.create_workflow(WorkflowRow(
                workflow_id, "n", "PENDING", 1, "json", None, None, None, None, None, None,
                now, None, None, None, 0, 0, None, None, now, now), [])
        assert len(store.claim("me", now, now + 60, 5)) == 2
        good = Append("good", "me", [NewEvent(0, 1, "step.completed", "s")], None, None, None,
                      None, None, now)
        bad = Append("bad", "me", [NewEvent(0, 1, "step.completed", None)],  # type: ignore[arg-type]
                     None, None, None, None, None, now)
        store._commit([bad, good])  # both pipelined at the head of one batch
        assert good.error is None and isinstance(bad.error, InvalidArgument)
        assert [e.name for e in store.events("good")] == ["s"]
        assert store.events("bad") == []
    finally:
        store.close()


def test_a_schema_of_the_first_migration_is_brought_up_to_date(pg_url: str) -> None:
    from durable.store import postgres_schema
    from durable.store.postgres import PostgresStore

    target = postgres_schema.parse_url(pg_url)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {target.quoted}")
        conn.execute(f"CREATE TABLE {target.quoted}.migrations (number integer PRIMARY KEY, "
                     "applied timestamptz NOT NULL DEFAULT now(), "
                     "backend integer NOT NULL DEFAULT pg_backend_pid())")
        for statement in postgres_schema.MIGRATIONS[0]:
            conn.execute(statement.replace("{s}", target.quoted).encode())
        conn.execute(f"INSERT INTO {target.quoted}.migrations (number) VALUES (1)")
        conn.execute(f"INSERT INTO {target.quoted}.workflows (workflow_id, name, status, "
                     "input_encoding, created, updated) VALUES ('old', 'n', 'SUCCESS', "
                     "'json', 1, 1)")
        conn.execute(f"INSERT INTO {target.quoted}.events VALUES "
                     "('old', 0, 1, 0, 'workflow.started', 'n', '', '', 'json', NULL, 1)")
    store = PostgresStore(pg_url)
    try:
        old = store.workflow("old")
        assert old is not None and old.queue is None and old.priority == 0
        assert store.queue_depths() == {}
        assert store.prune(time.time(), ["SUCCESS"], 10) == 1  # the new DELETE rule
        assert store.workflow("old") is None and store.event_count("old") == 0
    finally:
        store.close()
    numbers = execute_sql(pg_url, "SELECT number FROM migrations ORDER BY number")
    assert [n for (n,) in numbers] == list(range(1, len(postgres_schema.MIGRATIONS) + 1))


def test_an_append_that_fails_in_the_storage_raises_storage_failed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from durable.store import NewEvent, StorageFailed, WorkflowRow
    from durable.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        now = time.time()
        store.create_workflow(WorkflowRow(
            "w", "n", "PENDING", 1, "json", None, None, None, None, None, None, now, None,
            None, None, 0, 0, None, None, now, now), [])
        assert len(store.claim("me", now, now + 60, 1)) == 1

        def server_gone(self: PostgresStore, batch: list, *rest: bool) -> None:  # type: ignore[type-arg]
            with self._pool.connection() as conn:  # a real error from the server
                conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '58030'; END $$")

        monkeypatch.setattr(PostgresStore, "_commit_once", server_gone)
        with pytest.raises(StorageFailed) as raised:
            store.append("w", "me", [NewEvent(1, 1, "step.completed", "s")], now=now)
        assert isinstance(raised.value.error, StorageError)
        assert "recording events of workflow 'w'" in str(raised.value.error)
    finally:
        store.close()


def test_the_listener_connects_where_listen_host_says(pg_url: str) -> None:
    # The pool goes over TCP (as it would to PgBouncer); the listener over the socket.
    url = f"{pg_url}&listen_host=/var/run/postgresql"
    with durable.Engine(url, workers=1, poll_interval=30.0) as engine:
        wait_until(lambda: listeners(pg_url) == 1, timeout=5, what="the listener")
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            routes = dict(admin.execute(
                "SELECT application_name, client_addr IS NULL FROM pg_stat_activity "
                "WHERE application_name LIKE %s", (f"durable%{schema_of(pg_url)}",)).fetchall())
        assert routes == {f"durable listen {schema_of(pg_url)}": True,
                          f"durable {schema_of(pg_url)}": False}
        assert engine.run(waiting.sleeper, 0) is not None
