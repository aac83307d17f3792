"""The recorded calls a workflow makes besides steps: values, timers, signals, state,
published events, patches, compensations and continue-as-new.

Each takes a call number and is recorded, so that replay returns what the first run saw.
"""

from __future__ import annotations

import json
import random as _random
import uuid as _uuid
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec

from durable import serialization as ser
from durable.errors import VALUE_FIX, InvalidArgument, Unwind
from durable.runtime.checks import check_text, encode_message
from durable.runtime.context import (
    ReplayEnd,
    TimedOut,
    WorkflowContext,
    current_step_key,
    current_step_workflow,
    host_time,
    record_value,
    require,
)
from durable.runtime.registry import Step, seconds


def time() -> float:
    """Seconds since the epoch (the engine's clock), recorded."""
    return float(record_value("time", host_time))


def random() -> float:
    """A float in [0, 1), recorded (each call its own value, not a shared seeded stream)."""
    return float(record_value("random", _random.random))


def randint(a: int, b: int) -> int:
    """An int in [a, b], recorded."""
    return int(record_value("randint", lambda: _random.randint(a, b), (a, b)))


def uuid4() -> _uuid.UUID:
    """A random UUID, recorded."""
    return _uuid.UUID(record_value("uuid4", lambda: str(_uuid.uuid4())))


def workflow_id() -> str:
    """The id of the running workflow; in its steps too (threads and child processes)."""
    key = current_step_key.get()
    if key is not None:  # inside a step
        return current_step_workflow.get() or key.rpartition(":")[0]
    return require("workflow_id").workflow_id


def sleep(duration: float | timedelta) -> None:
    """Sleep durably: the workflow is suspended (no thread held) until the timer is due,
    across restarts. A restart does not restart the timer."""
    delay = seconds(duration, "durable.sleep() duration")
    assert delay is not None
    ctx = require("sleep")
    site, recorded = ctx.begin("sleep", "sleep", (delay,), {})
    if recorded is not None:
        last = recorded[-1]
        if last.kind == "sleep.fired":
            return
        if ctx.replaying:
            raise ReplayEnd(site)
        due = json.loads(last.payload)["due"]
    else:
        due = ctx.host.time() + delay
        if delay > 0:
            started = ctx.event(site, "sleep.started", ser.JSON, json.dumps({"due": due}))
            raise ctx.suspend(started, status="WAITING", wake_at=due, waiting=_until(due))
    now = ctx.host.time()
    if now < due:
        raise ctx.suspend(status="WAITING", wake_at=due, waiting=_until(due))
    _check_deadline(ctx, now, due)
    ctx.append(ctx.event(site, "sleep.fired", ser.JSON, json.dumps({"due": due})))


def _check_name(ctx: WorkflowContext, what: str, name: Any) -> None:
    """A signal, event or state name is non-empty text: anything else cannot be
    recorded or matched (it would leave the workflow hanging)."""
    check_text(name, f"workflow {ctx.workflow_id!r} (after call #{ctx.call}): {what}")


def _check_deadline(ctx: WorkflowContext, now: float, due: float) -> None:
    """A timer found due after the workflow's own deadline (the engine was down, or a
    test engine's clock jumped over both): the workflow times out first, as it would
    have if woken in time."""
    deadline = ctx.row.deadline
    if deadline is not None and not ctx.cancelling and deadline < due and now >= deadline:
        raise TimedOut()


def _until(due: float) -> str:
    return f"timer until {datetime.fromtimestamp(due, UTC).isoformat(timespec='seconds')}"


def wait_for_signal(
    name: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """The payload of the oldest unconsumed signal ``name``, sent before or after this call.

    The workflow is suspended (no thread held) until the signal comes; with ``timeout``,
    ``default`` is returned once it passes. Each signal is delivered once, in send order.
    """
    limit = seconds(timeout, "wait_for_signal() timeout")
    ctx = require("wait_for_signal")
    _check_name(ctx, "durable.wait_for_signal(name)", name)
    site, recorded = ctx.begin("signal", name, (), {})
    deadline = None if limit is None else ctx.host.time() + limit
    waiting_recorded = False
    if recorded is not None:
        last = recorded[-1]
        if last.kind == "signal.received":
            return ser.decode(last.encoding, last.payload)
        if last.kind == "signal.timeout":
            return default
        if ctx.replaying:
            raise ReplayEnd(site)
        deadline = json.loads(last.payload)["deadline"]
        waiting_recorded = True
    found = ctx.host.store.next_signal(ctx.workflow_id, name)
    if found is not None:
        signal_id, encoding, payload = found
        ctx.append(ctx.event(site, "signal.received", encoding, payload),
                   consume_signal=signal_id)
        return ser.decode(encoding, payload)
    now = ctx.host.time()
    if deadline is not None and now >= deadline:
        _check_deadline(ctx, now, deadline)
        ctx.append(ctx.event(site, "signal.timeout", ser.JSON, json.dumps(default)
                             if ser.is_plain_json(default) else None))
        return default
    events = [] if waiting_recorded else [
        ctx.event(site, "signal.waiting", ser.JSON, json.dumps({"deadline": deadline}))
    ]
    waiting = f"signal {name!r}" + (f" until {_until(deadline)[12:]}" if deadline else "")
    raise ctx.suspend(*events, status="WAITING", wake_at=deadline, waiting=waiting,
                      recheck=("signal", name))


def set_event(key: str, value: Any, allow_pickle: bool = False) -> None:
    """Publish ``value`` under ``key``; outsiders read it with ``engine.get_event``.

    ``value`` is JSON (JSON data, or a pydantic model or dataclass, read back as a dict)
    unless ``allow_pickle=True``: the reader would run code to unpickle it.
    """
    ctx = require("set_event")
    _check_name(ctx, "durable.set_event(key, ...)", key)
    site, recorded = ctx.begin("event", key, (), {})
    if recorded is not None:
        return
    if allow_pickle:
        encoding, payload, _ = ctx.encode(site, f"event {key!r}", value, None, VALUE_FIX)
    else:
        encoding, payload = encode_message(value, False, ctx.workflow_id, site.call,
                                           f"event {key!r}")
    ctx.append(ctx.event(site, "event.set", encoding, payload), publish=(key, encoding, payload))


def patched(change_id: str) -> bool:
    """True in runs that reach this point with the new code, False in older runs.

    Branch on it to change a workflow's code without breaking runs in flight::

        if durable.patched("add-fraud-check"):
            fraud_check(order)
    """
    if not isinstance(change_id, str):
        raise InvalidArgument(f"durable.patched() takes a str change id, not {change_id!r}")
    ctx = require("patched")
    recorded = ctx.history.of(ctx.call + 1)
    if recorded is not None and recorded[0].kind == "patch" and recorded[0].name == change_id:
        ctx.begin("patch", change_id, (), {})  # the log says this run took the patch here
        ctx.patches[change_id] = True
        return True
    known = ctx.patches.get(change_id)
    if known is not None:
        return known  # answered once per run: an old run stays old after a wait, too
    if recorded is not None:
        ctx.patches[change_id] = False
        return False  # an older run: its log goes on without this patch; take no call number
    site, recorded = ctx.begin("patch", change_id, (), {})
    if recorded is None:
        ctx.append(ctx.event(site, "patch", ser.JSON, "true"))
    ctx.patches[change_id] = True
    return True


P = ParamSpec("P")


def compensate(step: Step[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
    """Register ``step(*args, **kwargs)`` to run if the workflow fails or is cancelled.

    Registered compensations run in reverse order, each exactly once, as recorded steps.
    """
    if not isinstance(step, Step):
        raise InvalidArgument(
            f"durable.compensate() takes a @durable.step function, not {step!r}"
        )
    ctx = require("compensate")
    site, recorded = ctx.begin("compensation", step.name, args, kwargs)
    if recorded is None:
        ctx.append(ctx.event(site, "compensation"))
    ctx.compensations.append((site.call, step, args, kwargs))


class ContinueAsNew(Unwind):
    """Unwinds a run that continues as a new run of the same workflow id."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args_, self.kwargs = args, kwargs
        super().__init__("continue as new")


def continue_as_new(*args: Any, **kwargs: Any) -> None:
    """End this run and start the same workflow id afresh with these arguments."""
    require("continue_as_new")
    raise ContinueAsNew(args, kwargs)


class _State(MutableMapping[str, Any]):
    """``durable.state``: the running workflow's durable mapping, rebuilt on replay."""

    def _ctx(self) -> WorkflowContext:
        return require("state")

    def __getitem__(self, key: str) -> Any:
        return self._ctx().state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        ctx = self._ctx()
        _check_name(ctx, "durable.state key", key)
        site, recorded = ctx.begin("state", key, (), {})
        if recorded is None:
            encoding, payload, value = ctx.encode(site, f"state[{key!r}]", value, None,
                                                  VALUE_FIX)
            ctx.append(ctx.event(site, "state.set", encoding, payload))
        else:
            last = recorded[-1]
            if last.kind != "state.set":
                raise ctx.divergence(site, last)
            value = ser.decode(last.encoding, last.payload)
        ctx.state[key] = value

    def __delitem__(self, key: str) -> None:
        ctx = self._ctx()
        _check_name(ctx, "durable.state key", key)
        if key not in ctx.state:
            raise KeyError(key)
        site, recorded = ctx.begin("state", key, (), {})
        if recorded is None:
            ctx.append(ctx.event(site, "state.deleted"))
        elif recorded[-1].kind != "state.deleted":
            raise ctx.divergence(site, recorded[-1])
        del ctx.state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._ctx().state))

    def __len__(self) -> int:
        return len(self._ctx().state)

    def __repr__(self) -> str:
        return f"durable.state({self._ctx().state!r})"


state = _State()
