"""durable.testing: the time-skipping TestEngine, the durable_engine fixture (pytest11
entry point), and exported histories replayed as regression tests."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

import durable
from durable.errors import NonDeterminismError, WaitTimeout, WorkflowFailed, WorkflowTimeout
from durable.testing import TestEngine, replay

attempts: list[float] = []


@durable.step(name="kit.note")
def note(text: str) -> str:
    return text


@durable.workflow(name="kit.reminder")
def reminder(who: str) -> dict[str, str]:
    start = durable.now()
    durable.sleep(timedelta(days=2))
    return {"who": note(who), "slept": str(durable.now() - start)}


@durable.workflow(name="kit.approval")
def approval(order: str) -> str:
    ok = durable.wait_for_signal("approved", timeout=timedelta(days=3), default=False)
    return f"{order} {'approved' if ok else 'timed out'}"


@durable.step(name="kit.flaky", retry=durable.RetryPolicy(max_attempts=3, initial_delay=3600,
                                                          backoff="fixed"))
def flaky() -> str:
    attempts.append(time.time())
    if len(attempts) < 2:
        raise ConnectionError("down")
    return "up"


@durable.workflow(name="kit.retrying")
def retrying() -> str:
    return flaky()


@durable.workflow(name="kit.slow", timeout=timedelta(hours=1))
def slow() -> str:
    durable.sleep(timedelta(days=1))
    return "never"


def test_a_two_day_sleep_fires_when_the_clock_is_advanced() -> None:
    with TestEngine() as engine:
        handle = engine.start(reminder, "ann")
        with pytest.raises(WaitTimeout):
            handle.result(timeout=0.3)  # the virtual clock has not moved: still asleep
        assert handle.status() == durable.Status.WAITING
        began = time.monotonic()
        engine.advance(timedelta(days=2))
        result = handle.result(timeout=5)
        assert time.monotonic() - began < 5
    assert result["who"] == "ann"
    assert result["slept"].startswith("2 days")  # durable.now() follows the virtual clock


def test_a_wait_for_signal_timeout_and_a_workflow_timeout_follow_the_clock() -> None:
    with TestEngine() as engine:
        waiting = engine.start(approval, "A-1")
        late = engine.start(slow)
        time.sleep(0.1)
        engine.advance(timedelta(days=3, seconds=1))
        assert waiting.result(timeout=5) == "A-1 timed out"
        with pytest.raises(WorkflowFailed) as failed:
            late.result(timeout=5)
        assert isinstance(failed.value.__cause__, WorkflowTimeout)


def test_a_long_retry_backoff_fires_when_the_clock_is_advanced() -> None:
    attempts.clear()
    with TestEngine() as engine:
        handle = engine.start(retrying)
        assert _wait(lambda: handle.status() == durable.Status.RETRYING)
        engine.advance(3600)
        assert handle.result(timeout=5) == "up"
    assert len(attempts) == 2


def test_engine_time_is_the_wall_clock_plus_what_was_advanced() -> None:
    with TestEngine(workers=0) as engine:
        engine.advance(timedelta(hours=5))
        assert abs(engine.time() - (time.time() + 5 * 3600)) < 1
        assert engine.advanced == 5 * 3600
        with pytest.raises(durable.errors.InvalidArgument, match="only moves forward"):
            engine.advance(-1)


def test_the_durable_engine_fixture_is_a_test_engine_with_workers(
        durable_engine: TestEngine) -> None:
    assert isinstance(durable_engine, TestEngine)
    assert durable_engine.run(reminder_now) == "ok"


@durable.workflow(name="kit.reminder_now")
def reminder_now() -> str:
    return note("ok")


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {e.name: e.value for e in entry_points(group="pytest11")}
    assert names.get("durable") == "durable.testing.plugin"


def test_an_exported_history_replays_and_catches_a_divergence(tmp_path: Path) -> None:
    with TestEngine() as engine:
        handle = engine.start(reminder.options(workflow_id="r-1"), "bob")
        engine.advance(timedelta(days=2))
        expected = handle.result(timeout=5)
        text = engine.export("r-1")
    data = json.loads(text)
    assert (data["format"], data["version"]) == ("durable.history", 1)
    assert data["events"][0]["kind"] == "workflow.started"
    path = tmp_path / "run.json"
    path.write_text(text)
    assert replay(path, reminder) == expected
    assert replay(text, reminder) == expected

    @durable.workflow(name="kit.reminder_changed")
    def changed(who: str) -> dict[str, str]:
        start = durable.now()
        durable.sleep(timedelta(days=1))  # the code now sleeps one day: a divergence
        return {"who": note(who), "slept": str(durable.now() - start)}

    with pytest.raises(NonDeterminismError, match="call #2"):
        replay(path, changed)


def test_a_file_that_is_not_a_history_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(durable.errors.InvalidArgument, match="durable export"):
        replay(path, reminder)
    path.write_text('{"format": "durable.history", "version": 99}')
    with pytest.raises(durable.errors.InvalidArgument, match="upgrade durable"):
        replay(path, reminder)


def _wait(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_store_writes_take_the_engine_clock() -> None:
    with TestEngine() as engine:
        engine.advance(timedelta(days=1))
        handle = engine.start(approval.options(workflow_id="clock-1"), "A-2")
        assert _wait(lambda: handle.status() == durable.Status.WAITING)
        handle.signal("approved", True)
        assert handle.result(timeout=5) == "A-2 approved"
        row = engine.row("clock-1")
        history = handle.history()
    tomorrow = time.time() + 86_000
    assert row.created > tomorrow and row.updated > tomorrow
    assert all(event.created.timestamp() > tomorrow for event in history)


class Opaque:
    """Not JSON: recorded with cloudpickle, exported as base64."""

    def __init__(self, value: int) -> None:
        self.value = value


@durable.step(name="kit.opaque")
def opaque(value: int) -> Opaque:
    return Opaque(value)


@durable.workflow(name="kit.binary")
def binary(value: int) -> int:
    return opaque(value).value + 1


def test_a_history_with_binary_payloads_round_trips_through_json() -> None:
    with TestEngine() as engine:
        assert engine.run(binary.options(workflow_id="bin-1"), 41) == 42
        text = engine.export("bin-1")
    events = json.loads(text)["events"]
    assert any(isinstance(e["payload"], dict) and "base64" in e["payload"] for e in events)
    assert replay(text, binary) == 42
