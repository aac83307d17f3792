"""The `durable` logger: one INFO line per workflow start, suspension, resumption, step
retry, divergence, failure and end, with workflow_id/workflow_name/call as extra fields;
step lines at DEBUG only."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import durable
from durable.testing import TestEngine
from tests.conftest import wait_until

flaky_calls: list[int] = []
version = {"v": 1}


@durable.step(name="logs.flaky", retry=durable.RetryPolicy(max_attempts=2, initial_delay=0.01))
def flaky() -> str:
    flaky_calls.append(1)
    if len(flaky_calls) == 1:
        raise ConnectionError("reset by peer")
    return "ok"


@durable.step(name="logs.a")
def step_a() -> str:
    return "a"


@durable.step(name="logs.b")
def step_b() -> str:
    return "b"


@durable.workflow(name="logs.napper")
def napper() -> str:
    durable.sleep(timedelta(hours=1))
    return flaky()


@durable.workflow(name="logs.failing")
def failing() -> str:
    raise ValueError("no stock")


@durable.workflow(name="logs.changing")
def changing() -> str:
    (step_a if version["v"] == 1 else step_b)()
    durable.wait_for_signal("go")
    return "done"


def _lines(caplog: pytest.LogCaptureFixture, workflow_id: str) -> dict[str, logging.LogRecord]:
    return {r.event: r for r in caplog.records  # type: ignore[attr-defined]
            if getattr(r, "workflow_id", None) == workflow_id}


def test_info_lines_for_the_life_of_a_workflow(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="durable")
    flaky_calls.clear()
    with TestEngine() as engine:
        handle = engine.start(napper.options(workflow_id="nap-1"))
        engine.advance(timedelta(hours=1))
        assert handle.result(timeout=5) == "ok"
        with pytest.raises(durable.errors.WorkflowFailed):
            engine.run(failing.options(workflow_id="fail-1"))
    lines = _lines(caplog, "nap-1")
    assert {"started", "suspended", "resumed", "step.retry", "success"} <= set(lines)
    assert "step.completed" not in lines  # a step line is DEBUG
    assert "waiting for timer until" in lines["suspended"].getMessage()
    retry = lines["step.retry"]
    assert (retry.attempt, retry.delay) == (1, 0.01)  # type: ignore[attr-defined]
    assert "ConnectionError: reset by peer" in retry.getMessage()
    done = lines["success"]
    assert done.workflow_name == "logs.napper" and done.duration >= 3600  # type: ignore[attr-defined]
    failed = _lines(caplog, "fail-1")["failure"]
    assert failed.levelno == logging.WARNING and "ValueError: no stock" in failed.getMessage()
    for record in caplog.records:
        if hasattr(record, "workflow_id"):
            assert isinstance(record.call, int)  # type: ignore[attr-defined]


def test_debug_adds_a_line_per_step(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="durable")
    flaky_calls[:] = [1]
    with TestEngine() as engine:
        handle = engine.start(napper.options(workflow_id="nap-2"))
        engine.advance(timedelta(hours=1))
        handle.result(timeout=5)
    step = _lines(caplog, "nap-2")["step.completed"]
    assert step.levelno == logging.DEBUG and step.step == "logs.flaky"  # type: ignore[attr-defined]


def test_a_divergence_is_logged_with_its_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="durable")
    version["v"] = 1
    try:
        with TestEngine() as engine:
            handle = engine.start(changing.options(workflow_id="chg-1"))
            wait_until(lambda: handle.status() == durable.Status.WAITING)
            version["v"] = 2
            handle.signal("go")
            wait_until(lambda: "diverged" in _lines(caplog, "chg-1"), what="the divergence")
    finally:
        version["v"] = 1
    diverged = _lines(caplog, "chg-1")["diverged"]
    assert diverged.call == 1 and diverged.levelno == logging.ERROR  # type: ignore[attr-defined]
