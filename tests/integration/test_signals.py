"""Signals: buffered, delivered exactly once in send order, across processes and kill -9."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

import durable
from durable.errors import WorkflowFinished, WorkflowNotFound
from tests.conftest import execute_sql, wait_until
from tests.integration._procs import client, finish, kill9, lines, spawn, waiting

two_signals = waiting.two_signals

WAITING = durable.Status.WAITING


@durable.workflow(name="test_signals.collect")
def collect(count: int) -> list[object]:
    return [durable.wait_for_signal("item") for _ in range(count)]


@durable.workflow(name="test_signals.with_timeout")
def with_timeout(seconds: float) -> object:
    return durable.wait_for_signal("answer", timeout=seconds, default="no answer")


def received(engine: durable.Engine, workflow_id: str) -> list[object]:
    return [e.value for e in engine.history(workflow_id) if e.kind == "signal.received"]


def inbox(db: str, workflow_id: str, name: str | None = None) -> list[tuple[int, int | None]]:
    """``(signal id, position of the event that consumed it)`` of the signals sent."""
    return execute_sql(  # type: ignore[return-value]
        db,
        "SELECT id, consumed_position FROM signals WHERE workflow_id = ? "
        "AND name = COALESCE(?, name) ORDER BY id",
        (workflow_id, name),
    )


def consumed(db: str, workflow_id: str) -> int:
    return sum(position is not None for _, position in inbox(db, workflow_id))


def assert_each_delivered_once_in_order(db: str, workflow_id: str, sent: list[object]) -> None:
    """The workflow returned ``sent``, its log received each once, and every signal of
    one name was consumed after the one sent before it."""
    with client(db) as engine:
        assert engine.handle(workflow_id).result(timeout=30) == sent
        assert received(engine, workflow_id) == sent
    consumed = [position for _, position in inbox(db, workflow_id)]
    assert None not in consumed and len(set(consumed)) == len(sent)
    for name in ("a", "b", "item"):
        positions = [position for _, position in inbox(db, workflow_id, name)]
        assert positions == sorted(positions)


# -- across processes ---------------------------------------------------------------


def test_a_signal_from_another_process_wakes_a_worker_process_waiting_for_it(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    worker = spawn(db, effects, "waiting.one_signal", "w", "[]")
    with client(db) as engine:
        wait_until(lambda: engine.handle("w").status() is WAITING if engine.store.workflow("w")
                   else False, what="the worker to wait for the signal")
        engine.send_signal("w", "go", {"approved": True})
        assert engine.handle("w").result(timeout=10) == {"approved": True}
    finish(worker)
    assert lines(effects) == ["received {'approved': True}"]


def test_a_signal_sent_before_the_workflow_runs_is_buffered_and_delivered_by_a_new_worker(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    with client(db) as engine:
        engine.start("waiting.one_signal", workflow_id="early")
        engine.send_signal("early", "go", "sent first")
    worker = spawn(db, effects)
    finish(worker)
    with client(db) as engine:
        assert engine.handle("early").result(timeout=1) == "sent first"


def test_a_signal_buffered_before_its_wait_survives_a_kill_of_the_waiting_worker(
    db: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    worker = spawn(db, effects)
    with client(db) as engine:
        engine.start(two_signals, workflow_id="ab")
        wait_until(lambda: engine.handle("ab").status() is WAITING, what="the wait for 'a'")
        engine.send_signal("ab", "b", "second")  # buffered: the workflow waits for "a"
        kill9(worker)
        engine.send_signal("ab", "a", "first")
    worker = spawn(db, effects)
    finish(worker)
    assert_each_delivered_once_in_order(db, "ab", ["first", "second"])


def _send_with_kills(db: str, tmp_path: Path, count: int, kills: int, seed: int,
                     workers: int = 1) -> None:
    """Send ``count`` signals to a workflow served by ``workers`` worker processes, one of
    which is killed -9 (and replaced) ``kills`` times."""
    effects = tmp_path / "effects"
    rng = random.Random(seed)
    kill_at = set(rng.sample(range(1, count), kills))
    alive = [spawn(db, effects, "waiting.collect", "c", json.dumps([count]))]
    alive += [spawn(db, effects) for _ in range(workers - 1)]
    with client(db) as engine:
        wait_until(lambda: engine.store.workflow("c") is not None, what="the workflow")
        for i in range(count):
            if i in kill_at:
                # Kill a worker that is busy: it has consumed all but the last few sent.
                enough = i - rng.randint(0, 3)
                wait_until(lambda n=enough: consumed(db, "c") >= n, what=f"{enough} consumed")
                kill9(alive.pop(rng.randrange(len(alive))))
                alive.append(spawn(db, effects))
            engine.send_signal("c", "item", i)
    for worker in alive:
        finish(worker, timeout=120)
    assert_each_delivered_once_in_order(db, "c", list(range(count)))


def test_a_hundred_signals_with_kills_are_each_delivered_once_in_order(
    db: str, tmp_path: Path
) -> None:
    _send_with_kills(db, tmp_path, count=100, kills=5, seed=7)


def test_signals_served_by_two_workers_with_kills_are_each_delivered_once_in_order(
    db: str, tmp_path: Path
) -> None:
    _send_with_kills(db, tmp_path, count=100, kills=5, seed=3, workers=2)


@pytest.mark.slow
def test_a_thousand_signals_with_kills_are_each_delivered_once_in_order(
    db: str, tmp_path: Path
) -> None:
    _send_with_kills(db, tmp_path, count=1000, kills=20, seed=11)


# -- in one process -------------------------------------------------------------------


def test_signals_sent_before_and_during_the_wait_arrive_in_send_order(
    engine: durable.Engine, db: str
) -> None:
    handle = engine.start(collect, 60, workflow_id="order")
    for i in range(30):  # most arrive before the workflow waits for them
        engine.send_signal("order", "item", i)
    wait_until(lambda: len(received(engine, "order")) == 30, what="the first 30")

    def send_the_rest() -> None:  # while it waits: from another thread, with a handle
        for i in range(30, 60):
            handle.signal("item", i)

    sender = threading.Thread(target=send_the_rest)
    sender.start()
    sender.join()
    assert_each_delivered_once_in_order(db, "order", list(range(60)))


def test_a_signal_of_another_name_is_not_consumed(engine: durable.Engine, db: str) -> None:
    handle = engine.start(two_signals, workflow_id="names")
    engine.send_signal("names", "b", "for b")
    engine.send_signal("names", "unrelated", "never read")
    wait_until(lambda: handle.status() is WAITING)
    engine.send_signal("names", "a", "for a")
    assert handle.result(timeout=5) == ["for a", "for b"]
    assert [position is None for _, position in inbox(db, "names")] == [False, True, False]


def test_replay_returns_the_recorded_signal_payloads(engine: durable.Engine) -> None:
    handle = engine.start(two_signals, workflow_id="rp")
    handle.signal("a", [1, 2])
    handle.signal("b", {"k": "v"})
    assert handle.result(timeout=5) == [[1, 2], {"k": "v"}]
    assert engine.replay("rp") == [[1, 2], {"k": "v"}]


def test_a_payload_that_is_not_json_is_delivered_intact_when_pickle_is_allowed(
        engine: durable.Engine) -> None:
    handle = engine.start(two_signals, workflow_id="blob")
    handle.signal("a", (1, "tuple"), allow_pickle=True)
    engine.send_signal("blob", "b", {1, 2, 3}, allow_pickle=True)
    assert handle.result(timeout=5) == [(1, "tuple"), {1, 2, 3}]


def test_a_wait_with_a_timeout_returns_the_default_when_no_signal_comes(
    engine: durable.Engine,
) -> None:
    handle = engine.start(with_timeout, 0.2, workflow_id="late")
    assert handle.result(timeout=5) == "no answer"
    with pytest.raises(WorkflowFinished):
        handle.signal("answer", "too late")
    assert engine.replay("late") == "no answer"


def test_a_wait_with_a_timeout_returns_the_signal_when_it_comes_in_time(
    engine: durable.Engine,
) -> None:
    handle = engine.start(with_timeout, 30, workflow_id="in-time")
    wait_until(lambda: handle.status() is WAITING)
    handle.signal("answer", 42)
    assert handle.result(timeout=5) == 42


def test_a_signal_to_an_unknown_workflow_raises_workflow_not_found(
    engine: durable.Engine,
) -> None:
    with pytest.raises(WorkflowNotFound, match="ghost"):
        engine.send_signal("ghost", "go")


def test_a_signal_to_a_finished_workflow_raises_workflow_finished(
    engine: durable.Engine,
) -> None:
    handle = engine.start(with_timeout, 0, workflow_id="done")
    handle.result(timeout=5)
    with pytest.raises(WorkflowFinished, match="'done'.*SUCCESS") as finished:
        engine.send_signal("done", "answer", 1)
    assert finished.value.workflow_id == "done"
    assert finished.value.status == "SUCCESS"


def test_a_waiting_workflow_holds_no_worker_thread(db: str) -> None:
    with durable.Engine(db, workers=1, synchronous="normal", poll_interval=0.01) as engine:
        handles = [engine.start(two_signals, workflow_id=f"w{i}") for i in range(5)]
        wait_until(lambda: all(h.status() is WAITING for h in handles))
        for h in handles:  # one worker serves them all, one after the other
            h.signal("a", 1)
            h.signal("b", 2)
        assert [h.result(timeout=5) for h in handles] == [[1, 2]] * 5
