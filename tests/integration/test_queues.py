"""Queues with real worker processes: global concurrency, rate limits, priorities,
deduplication, cancel before start, and children enqueued from a workflow."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests.conftest import wait_until
from tests.integration._queue_procs import Workers, effects

sys.path.insert(0, str(Path(__file__).parent))
from apps import queued  # named as the workers name it: apps.queued


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


def finished(client: durable.Engine, handles: list[durable.WorkflowHandle]) -> bool:
    return all(h.status().finished for h in handles)


def most_at_once(lines: list[list[str]]) -> int:
    """The most steps between their start and end lines at any moment (by their times)."""
    moments = sorted((float(w[3]), 1 if w[0] == "start" else -1) for w in lines
                     if w[0] in ("start", "end"))
    # At equal times an end sorts before a start (-1 < 1): touching intervals don't overlap.
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


def test_a_concurrency_limit_of_two_holds_across_three_worker_processes(
    workers: Workers, client: durable.Engine
) -> None:
    for _ in range(3):
        workers.spawn(workers=4)
    handles = client.start_many(queued.job, [(f"j{i}", 0.25) for i in range(12)],
                                queue=queued.spread)
    wait_until(lambda: finished(client, handles), timeout=60, what="12 queued jobs")
    lines = effects(workers.effects)
    assert most_at_once(lines) == 2  # never 3, and the limit is used
    # One at a time per process: two at once were in two processes, while the third
    # polled for work all along (a process that just finished a job often claims first).
    assert len({w[2] for w in lines}) >= 2
    assert all(h.result() == f"j{i}" for i, h in enumerate(handles))


def test_a_rate_limit_spreads_the_starts_over_its_window(
    workers: Workers, client: durable.Engine
) -> None:
    workers.spawn()
    workers.spawn()
    handles = [client.start(queued.job, f"r{i}", 0.0, queue="rated") for i in range(6)]
    wait_until(lambda: finished(client, handles), timeout=60, what="6 rate-limited jobs")
    dequeued = sorted(client.row(h.workflow_id).dequeued or 0.0 for h in handles)
    # (2, 1.0): any two dequeues more than one apart are at least a second apart.
    for earlier, later in zip(dequeued, dequeued[2:], strict=False):
        assert later - earlier >= 1.0
    assert dequeued[-1] - dequeued[0] >= 2.0


def test_priorities_order_a_queue_and_it_is_fifo_within_a_priority(
    workers: Workers, client: durable.Engine
) -> None:
    plan = [("a", 5), ("b", 1), ("c", 3), ("d", 1), ("e", 0), ("f", 3)]
    handles = [client.start(queued.job, tag, 0.0, queue=queued.ordered, priority=p,
                            workflow_id=f"prio-{tag}") for tag, p in plan]
    never = client.start(queued.job, "never", 0.0, queue=queued.ordered, priority=0)
    assert never.status() == durable.Status.ENQUEUED
    never.cancel()  # cancelled before it starts: it never runs
    assert never.status() == durable.Status.CANCELLED
    workers.spawn()  # only now does a worker serve the queue
    wait_until(lambda: finished(client, handles), timeout=60, what="the ordered jobs")
    order = [w[1] for w in effects(workers.effects) if w[0] == "start"]
    assert order == ["e", "b", "d", "c", "f", "a"]
    with pytest.raises(durable.errors.WorkflowCancelled):
        never.result()
    assert [e.kind for e in never.history()] == ["workflow.started", "workflow.cancelled"]


def test_a_dedup_id_that_is_enqueued_or_running_raises_and_is_free_once_finished(
    workers: Workers, client: durable.Engine
) -> None:
    first = client.start(queued.job, "first", 0.5, queue="ordered", dedup_id="invoice-7")
    with pytest.raises(durable.errors.DuplicateWorkflow, match="invoice-7"):
        client.start(queued.job, "second", 0.0, queue="ordered", dedup_id="invoice-7")
    workers.spawn()
    wait_until(lambda: first.status() == durable.Status.RUNNING, what="the first to run")
    with pytest.raises(durable.errors.DuplicateWorkflow):
        client.start(queued.job, "third", 0.0, queue="ordered", dedup_id="invoice-7")
    assert first.result(timeout=30) == "first"
    again = client.start(queued.job, "again", 0.0, queue="ordered", dedup_id="invoice-7")
    assert again.result(timeout=30) == "again"
    # Another queue has its own dedup ids; the same id twice is an idempotent start.
    client.start(queued.job, "x", 0.0, queue="limited", dedup_id="invoice-7", workflow_id="x")
    client.start(queued.job, "x", 0.0, queue="limited", dedup_id="invoice-7", workflow_id="x")


def test_children_enqueued_by_a_workflow_keep_the_queue_limit_and_are_recorded(
    workers: Workers, client: durable.Engine
) -> None:
    workers.spawn(workers=8)
    parent = client.start(queued.fan_out, 5)
    assert parent.result(timeout=60) == [f"child-{i}" for i in range(5)]
    assert most_at_once(effects(workers.effects)) <= 2
    kinds = [e.kind for e in parent.history()]
    assert kinds.count("child.started") == 5 and kinds.count("child.completed") == 5
    child = client.row(f"{parent.workflow_id}/call-1")
    assert child.queue == "limited" and child.parent_id == parent.workflow_id


def test_worker_concurrency_limits_each_engine(db: str, tmp_path: Path) -> None:
    with durable.Engine(db, workers=8, synchronous="normal", poll_interval=0.01) as engine:
        handles = engine.start_many(queued.job, [(f"w{i}", 0.1) for i in range(5)],
                                    queue=queued.per_worker)
        assert [h.result(timeout=30) for h in handles] == [f"w{i}" for i in range(5)]
    assert most_at_once(effects(tmp_path / "effects")) == 1


def test_a_deferred_start_waits_for_its_time(engine: durable.Engine) -> None:
    import time

    began = time.time()
    handle = engine.start(queued.waits_for_go, delay=0.4, signal=("go", "now"))
    assert handle.status() == durable.Status.ENQUEUED
    assert handle.result(timeout=10) == "now"
    assert engine.row(handle.workflow_id).dequeued - began >= 0.4  # type: ignore[operator]


def test_bad_queue_arguments_are_refused_with_the_fix(engine: durable.Engine) -> None:
    with pytest.raises(durable.errors.InvalidArgument, match="give queue="):
        engine.start(queued.job, "x", priority=1)
    with pytest.raises(durable.errors.InvalidArgument, match="not both"):
        engine.start(queued.job, "x", delay=1, start_at=1.0)
    with pytest.raises(durable.errors.InvalidArgument, match="rate_limit"):
        durable.Queue("bad", rate_limit=(0, 1))
    with pytest.raises(durable.errors.InvalidArgument, match="already declared"):
        durable.Queue("limited", concurrency=3)


def test_a_dequeued_workflow_that_waits_keeps_its_slot(engine: durable.Engine) -> None:
    waiting = engine.start(queued.waits_for_go, queue=queued.ordered)
    wait_until(lambda: waiting.status() == durable.Status.WAITING, what="the first to wait")
    behind = engine.start(queued.job, "behind", 0.0, queue=queued.ordered)
    engine.start(queued.job, "elsewhere", 0.0, queue="limited").result(timeout=10)
    assert behind.status() == durable.Status.ENQUEUED  # concurrency=1 is held by the waiter
    waiting.signal("go", "ok")
    assert behind.result(timeout=10) == "behind"


def test_a_worker_killed_mid_job_frees_its_queue_slot_once_its_job_is_recovered(
    workers: Workers, client: durable.Engine
) -> None:
    import signal

    doomed = workers.spawn(workers=4)
    handles = client.start_many(queued.job, [(f"k{i}", 0.4) for i in range(6)],
                                queue=queued.spread)
    wait_until(lambda: any(w[0] == "start" and w[2] == str(doomed.pid)
                           for w in effects(workers.effects)), what="a job in the doomed worker")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    workers.spawn(workers=4)
    workers.spawn(workers=4)
    wait_until(lambda: finished(client, handles), timeout=60, what="every job, recovered")
    assert [h.result() for h in handles] == [f"k{i}" for i in range(6)]
    lines = effects(workers.effects)
    ended = {w[1] for w in lines if w[0] == "end"}
    # The killed job's start has no end: count only the runs that ended.
    survivors = [w for w in lines if w[1] in ended and not (w[0] == "start"
                 and w[2] == str(doomed.pid) and not any(
                     e[0] == "end" and e[1] == w[1] and e[2] == w[2] for e in lines))]
    assert most_at_once(survivors) <= 2
    assert ended == {f"k{i}" for i in range(6)}
