"""The pure helpers behind the pages: values without unpickling, call spans, waits."""

from __future__ import annotations

import json

import cloudpickle

from durable.replay import Recorded
from durable.ui.views import call_spans, durable_state, show_arguments, show_value, time_left


def _event(position: int, call: int, kind: str, created: float, name: str = "s",
           payload: object = None) -> Recorded:
    return Recorded(position, call, kind, name, "", "", "json",
                    None if payload is None else json.dumps(payload), created)


def test_values_are_shown_without_unpickling() -> None:
    data = cloudpickle.dumps([1, 2])
    assert show_value("pickle", data) == f"<pickle: {len(data)} bytes>"
    assert show_value("json", '{"a": [1]}') == '{\n  "a": [\n    1\n  ]\n}'
    error = json.dumps({"type": "ValueError", "message": "no", "traceback": "T", "pickle": "x"})
    assert show_value("error", error) == "ValueError: no"
    assert show_value("json", '"' + "x" * 5000 + '"', limit=10).endswith("(5002 characters)")
    assert show_arguments("checkout", "json", '[["A-17"], {"express": true}]') == (
        'checkout("A-17", express=true)')
    assert show_arguments("f", "pickle", b"12345") == "<pickle: 5 bytes>"


def test_call_spans_time_steps_from_the_previous_event_and_waits_from_their_start() -> None:
    events = [
        _event(0, 0, "workflow.started", 100.0),
        _event(1, 1, "step.retry", 101.0),
        _event(2, 1, "step.completed", 103.0),
        _event(3, 2, "sleep.started", 104.0, "sleep"),
        _event(4, 2, "sleep.fired", 110.0, "sleep"),
        _event(5, 3, "step.failed", 111.5),
        _event(6, 4, "signal.waiting", 112.0, "approve"),
    ]
    step, sleep, failed, waiting = call_spans(events)
    assert (step.start, step.end, step.retries, step.outcome) == (100.0, 103.0, 1, "ok")
    assert (sleep.start, sleep.duration, sleep.family) == (104.0, 6.0, "sleep")
    assert (failed.duration, failed.outcome) == (1.5, "failed")
    assert (waiting.start, waiting.end, waiting.outcome) == (112.0, None, "open")


def test_state_is_the_last_value_of_each_key() -> None:
    events = [_event(1, 1, "state.set", 1, "a", 1), _event(2, 2, "state.set", 2, "b", 2),
              _event(3, 3, "state.set", 3, "a", 3), _event(4, 4, "state.deleted", 4, "b")]
    assert durable_state(events) == {"a": "3"}


def test_time_left() -> None:
    assert time_left(65) == "in 1 min 05 s"
    assert time_left(-3) == "overdue by 3.0 s"
