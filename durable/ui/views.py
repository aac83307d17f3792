"""What the pages show, computed from store rows: pure functions, no web framework.

Nothing here unpickles: a ``pickle`` payload is shown as ``<pickle: N bytes>``, and an
``error`` payload by the type, message and traceback text its JSON holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from durable.replay import Recorded, family
from durable.store import WorkflowRow
from durable.store.reads import Cursor, SignalRow

#: Statuses in the order the overview and the list filter show them.
STATUS_ORDER = ("RUNNING", "PENDING", "WAITING", "RETRYING", "PAUSED", "SUCCESS", "FAILURE",
                "CANCELLED", "SKIPPED")
#: Characters of a value shown in full on a page before it is cut.
VALUE_LIMIT = 4000
#: Calls drawn on a timeline: the latest ones of a longer log.
TIMELINE_CALLS = 400
_OK_KINDS = frozenset({"step.completed", "sleep.fired", "signal.received", "child.completed",
                       "value", "event.set", "state.set", "state.deleted", "patch",
                       "compensation"})
_FAILED_KINDS = frozenset({"step.failed", "child.failed", "signal.timeout"})
#: A wait starts at the event that arms it, not at the event before.
_WAIT_START_KINDS = frozenset({"sleep.started", "signal.waiting", "child.started"})


def show_value(encoding: str | None, payload: Any, limit: int = VALUE_LIMIT) -> str:
    """A recorded value as text for people, without running any code of the payload."""
    if payload is None:
        return "None" if encoding else ""
    if encoding == "pickle":
        return f"<pickle: {len(payload)} bytes>"
    if encoding == "error":
        summary, _ = error_parts(payload)
        return summary
    if encoding in ("json", "pydantic"):
        text = payload.decode() if isinstance(payload, bytes) else str(payload)
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = text
        return _cut(pretty, limit)
    size = len(payload) if isinstance(payload, (bytes, str)) else 0
    return f"<{encoding}: {size} bytes>"


def show_arguments(name: str, encoding: str, payload: Any) -> str:
    """A workflow's arguments as a call, ``shop.checkout("A-17", express=true)`` (JSON)."""
    if encoding == "json" and payload is not None:
        try:
            args, kwargs = json.loads(payload)
            parts = [json.dumps(a, ensure_ascii=False) for a in args]
            parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items()]
            return _cut(f"{name}({', '.join(parts)})", VALUE_LIMIT)
        except (ValueError, TypeError, AttributeError):
            pass
    return show_value(encoding, payload)


def error_parts(payload: Any) -> tuple[str, str]:
    """``("Type: message", traceback text)`` of a recorded error."""
    try:
        record = json.loads(payload)
        return f"{record['type']}: {record['message']}", str(record.get("traceback") or "")
    except (ValueError, KeyError, TypeError):
        return _cut(str(payload), 400), ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@dataclass(slots=True)
class CallSpan:
    """One recorded call of a workflow, with when it started and ended."""

    call: int
    family: str
    name: str
    args: str
    start: float
    end: float | None = None
    outcome: str = "open"  # ok, failed, open (not answered yet)
    retries: int = 0
    kinds: list[str] = field(default_factory=list)
    first_position: int = 0

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


def call_spans(events: list[Recorded]) -> list[CallSpan]:
    """The calls of a log, in call order, with start and end times.

    The log records when a call is answered, not when it was made: a step starts at the
    previous event (exact for steps run one after another), a wait at the event that
    armed it (``sleep.started``, ``signal.waiting``, ``child.started``).
    """
    spans: dict[int, CallSpan] = {}
    previous: float | None = None
    for event in events:
        if event.call > 0:
            span = spans.get(event.call)
            if span is None:
                start = event.created if (
                    event.kind in _WAIT_START_KINDS or previous is None) else previous
                span = spans[event.call] = CallSpan(
                    event.call, family(event.kind), event.name, event.args, start,
                    first_position=event.position)
            span.kinds.append(event.kind)
            if event.kind == "step.retry":
                span.retries += 1
            if event.kind in _OK_KINDS or event.kind in _FAILED_KINDS:
                span.end = event.created
                span.outcome = "failed" if event.kind in _FAILED_KINDS else "ok"
        previous = event.created
    return [spans[call] for call in sorted(spans)]


def durable_state(events: list[Recorded]) -> dict[str, str]:
    """The workflow's ``durable.state`` after the last event of the log, shown as text."""
    state: dict[str, str] = {}
    for event in events:
        if event.kind == "state.set":
            state[event.name] = show_value(event.encoding, event.payload, 400)
        elif event.kind == "state.deleted":
            state.pop(event.name, None)
    return state


def time_left(seconds: float) -> str:
    """``"in 1 min 05 s"`` or ``"overdue by 3 s"``."""
    text = _duration(abs(seconds))
    return f"in {text}" if seconds >= 0 else f"overdue by {text}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_duration(seconds: float | None) -> str:
    """A duration for a table: ms below a second."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return _duration(seconds)


def waiting_for(row: WorkflowRow, inbox: list[SignalRow], child: WorkflowRow | None,
                now: float) -> str | None:
    """What an unfinished workflow waits for, with the time left on its timer."""
    if row.finished or not row.waiting:
        return None
    text = row.waiting
    if row.wait_signal:
        queued = sum(1 for s in inbox if s.name == row.wait_signal and s.consumed_position is None)
        if queued:
            text += f" ({queued} sent, not yet consumed)"
    if child is not None:
        text += f" (child is {child.status})"
    if row.wake_at is not None and row.status in ("WAITING", "RETRYING"):
        text += f"; wakes {time_left(row.wake_at - now)}"
    return text


def parse_cursor(text: str | None) -> Cursor | None:
    """``"<created>:<workflow id>"`` back into a cursor (None when absent or invalid)."""
    if not text:
        return None
    created, _, workflow_id = text.partition(":")
    try:
        return Cursor(float(created), workflow_id)
    except ValueError:
        return None


def format_cursor(cursor: Cursor | None) -> str:
    """A cursor as the list page carries it in its next-page link."""
    return "" if cursor is None else f"{cursor.created!r}:{cursor.workflow_id}"
