"""The StoreReads queries on both stores: results, pagination, and (SQLite) the indexes they use."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import durable
from durable.store.backend import open_store
from durable.store.reads import Cursor, WorkflowFilter
from durable.store.sqlite import SQLiteStore
from tests.conftest import execute_sql, wait_until
from tests.ui import flows


def _plan(store: SQLiteStore, sql: str, params: tuple[object, ...] = ()) -> str:
    return " / ".join(row[3] for row in store._read(f"EXPLAIN QUERY PLAN {sql}", params))


def _finish_some(engine: durable.Engine) -> list[str]:
    ids = []
    for i in range(7):
        ids.append(engine.start(flows.leaf, i, workflow_id=f"leaf-{i}").workflow_id)
    failed = engine.start(flows.failing, "A-1", workflow_id="bad-1")
    for workflow_id in ids:
        engine.handle(workflow_id).result(timeout=10)
    with pytest.raises(durable.errors.WorkflowFailed):
        failed.result(timeout=10)
    return ids


def test_counts_throughput_and_failures(engine: durable.Engine) -> None:
    since = time.time() - 60
    _finish_some(engine)
    store = engine.store
    assert store.status_counts() == {"SUCCESS": 7, "FAILURE": 1}
    names = {(name, status): n for name, status, n in store.counts_by_name()}
    assert names[("tests.ui.flows.leaf", "SUCCESS")] == 7
    assert names[("tests.ui.flows.failing", "FAILURE")] == 1
    buckets = store.throughput(since, 60)
    assert sum(b.started for b in buckets) == 8
    assert sum(b.finished for b in buckets) == 7
    assert sum(b.failed for b in buckets) == 1
    (failure,) = store.latest_failures(5)
    assert failure.workflow_id == "bad-1"


def test_list_pages_by_cursor_and_filters(engine: durable.Engine) -> None:
    _finish_some(engine)
    store = engine.store
    seen: list[str] = []
    after: Cursor | None = None
    while True:
        page = store.list_workflows(WorkflowFilter(), after, 3)
        seen += [r.workflow_id for r in page.rows]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert len(seen) == 8 and len(set(seen)) == 8  # every row once, none twice
    created = [store.workflow(w).created for w in seen]  # type: ignore[union-attr]
    assert created == sorted(created, reverse=True)
    assert [r.workflow_id for r in
            store.list_workflows(WorkflowFilter(status="FAILURE"), None, 10).rows] == ["bad-1"]
    prefixed = store.list_workflows(WorkflowFilter(id_prefix="leaf-"), None, 10).rows
    assert sorted(r.workflow_id for r in prefixed) == [f"leaf-{i}" for i in range(7)]
    assert [r.workflow_id for r in
            store.list_workflows(WorkflowFilter(search="af-3"), None, 10).rows] == ["leaf-3"]
    # LIKE wildcards in the search are literal characters
    assert store.list_workflows(WorkflowFilter(search="%"), None, 10).rows == []
    named = store.list_workflows(WorkflowFilter(name="tests.ui.flows.failing"), None, 10).rows
    assert [r.workflow_id for r in named] == ["bad-1"]


def _plans_of(store: SQLiteStore, where: WorkflowFilter, after: Cursor | None) -> str:
    """The query plan of the statement list_workflows really runs."""
    return _plan_of_call(store, lambda: store.list_workflows(where, after, 50))


def _plan_of_call(store: SQLiteStore, call: Callable[[], object]) -> str:
    """The query plan of the one statement ``call`` runs on the store."""
    seen: list[tuple[str, tuple[object, ...]]] = []
    read = store._read

    def spy(sql: str, params: tuple[object, ...] = ()) -> list[object]:
        seen.append((sql, params))
        return read(sql, params)

    store._read = spy  # type: ignore[method-assign]
    try:
        call()
    finally:
        store._read = read  # type: ignore[method-assign]
    ((sql, params),) = seen
    return _plan(store, sql, params)


@pytest.mark.sqlite_only
def test_the_list_uses_indexes(db: str) -> None:
    """Without ANALYZE (as a user's database is): every list query seeks an index."""
    store = SQLiteStore(db, preallocate=False)
    after = Cursor(time.time(), "wf-1")
    try:
        first = _plans_of(store, WorkflowFilter(), None)
        assert first == "SCAN workflows USING INDEX workflows_created"  # no sort: LIMIT stops it
        assert _plans_of(store, WorkflowFilter(), after) == (
            "SEARCH workflows USING INDEX workflows_created (created<?)")
        assert _plans_of(store, WorkflowFilter(name="n"), after) == (
            "SEARCH workflows USING INDEX workflows_name (name=? AND created<?)")
        assert _plans_of(store, WorkflowFilter(status="FAILURE"), after).startswith(
            "SEARCH workflows USING INDEX workflows_status (status=? AND created<?)")
        prefix = _plans_of(store, WorkflowFilter(id_prefix="wf-"), None)
        assert "SEARCH workflows USING INDEX sqlite_autoindex_workflows_1 (workflow_id>? AND " \
            "workflow_id<?)" in prefix
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_overview_queries_read_small_indexes(db: str) -> None:
    store = SQLiteStore(db, preallocate=False)
    try:
        failures = _plan_of_call(store, lambda: store.latest_failures(10))
        assert "USING INDEX workflows_ended (status=?)" in failures
        assert "USING INDEX workflows_set_aside" in failures
        assert "SCAN workflows" not in failures.replace("SCAN workflows USING INDEX", "")
        chart = _plan_of_call(store, lambda: store.throughput(time.time() - 3600, 60))
        assert "COVERING INDEX workflows_created (created>?)" in chart
        assert "COVERING INDEX workflows_ended (status=? AND updated>?)" in chart
    finally:
        store.close()


def test_tree_published_signals_and_events(engine: durable.Engine) -> None:
    assert engine.run(flows.parent, 2, workflow_id="p") == 1
    tree = engine.store.descendants("p", 100)
    assert [(n.workflow_id, n.depth) for n in tree] == [("p", 0), ("p/call-1", 1),
                                                         ("p/call-2", 1)]
    assert engine.store.descendants("nobody", 100) == []
    handle = engine.start(flows.approval, "A-9", workflow_id="ap")
    wait_until(lambda: handle.status() == durable.Status.WAITING, what="the approval wait")
    (published,) = engine.store.published_events("ap")
    assert published.key == "stage" and "charged A-9" in published.payload
    handle.signal("approve", {"by": "ann"})
    assert "ann" in handle.result(timeout=10)
    (signal,) = engine.store.signal_inbox("ap")
    assert signal.name == "approve" and signal.consumed_position is not None
    total = engine.store.event_count("ap")
    assert total == len(engine.store.events("ap"))
    tail = engine.store.events_tail("ap", 2)
    assert [e.position for e in tail] == [total - 2, total - 1]
    assert [e.position for e in engine.store.events_after("ap", 0, 2)] == [1, 2]


def test_step_stats_and_oldest_waiting(engine: durable.Engine) -> None:
    assert engine.run(flows.retrying, "k-stats") == "ok"
    stats = {s.name: s for s in engine.store.step_stats(0.0, (0.001, 1000.0))}
    flaky = stats["tests.ui.flows.flaky"]
    assert (flaky.attempts, flaky.retries, flaky.failures) == (2, 1, 0)
    assert flaky.bucket_counts[1] == 2 and flaky.p95 >= flaky.p50 >= 0
    assert engine.store.oldest_waiting() is None
    handle = engine.start(flows.approval, "A-2", workflow_id="waits")
    wait_until(lambda: handle.status() == durable.Status.WAITING, what="the wait")
    oldest = engine.store.oldest_waiting()
    assert oldest is not None and oldest.workflow_id == "waits"
    assert engine.store.queue_depths() == {}  # the schema has queues; none holds work


def test_queue_depths_when_the_schema_has_queues(db: str) -> None:
    store = open_store(db, preallocate=False)
    try:
        now = time.time()
        execute_sql(
            db, "INSERT INTO workflows (workflow_id, name, status, input_encoding, created, "
            "updated, queue) VALUES ('q1', 'n', 'PENDING', 'json', ?, ?, 'mail'), "
            "('q2', 'n', 'SUCCESS', 'json', ?, ?, 'mail')", (now, now, now, now))
        assert store.queue_depths() == {"mail": 1}
    finally:
        store.close()


def test_step_durations_run_from_the_previous_event(db: str) -> None:
    store = open_store(db, preallocate=False)
    try:
        rows = [("w", 0, 0, "workflow.started", "wf", 100.0), ("w", 1, 1, "step.retry", "a", 101.0),
                ("w", 2, 1, "step.completed", "a", 104.0), ("w", 3, 2, "step.failed", "b", 104.5),
                ("v", 0, 0, "workflow.started", "wf", 200.0), ("v", 1, 1, "step.completed", "a",
                                                                 202.0)]
        for row in rows:
            execute_sql(db, "INSERT INTO events VALUES (?, ?, 1, ?, ?, ?, '', '', 'json', NULL, ?)",
                        row)
        stats = {s.name: s for s in store.step_stats(0.0, (1.5, 2.5, 10.0))}
        a, b = stats["a"], stats["b"]
        assert (a.attempts, a.retries, a.failures, a.total_seconds) == (3, 1, 0, 6.0)
        assert (a.p50, a.p95, a.max) == (2.0, 3.0, 3.0)
        assert a.bucket_counts == [1, 2, 3]  # 1 s, 2 s, 3 s: cumulative per bound
        assert (b.attempts, b.failures, b.max) == (1, 1, 0.5)
        assert list(stats) == ["a", "b"]  # slowest p95 first
        assert store.step_stats(201.0, ())[0].attempts == 1  # only events since then
    finally:
        store.close()
