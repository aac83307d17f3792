"""durable: durable workflows with deterministic replay on an append-only SQLite event log.

Decorate functions with :func:`workflow` and :func:`step`; run them on an :class:`Engine`.
Every step result, deterministic value and signal is recorded, and a workflow resumes
after any interruption by replaying its log.
"""

from __future__ import annotations

from typing import Any

from durable import errors
from durable.engine import Engine, WorkflowHandle
from durable.runtime import dispatch as _dispatch  # noqa: F401  (installs how calls run)
from durable.runtime.calls import (
    compensate,
    continue_as_new,
    patched,
    randint,
    random,
    set_event,
    sleep,
    state,
    time,
    uuid4,
    wait_for_signal,
    workflow_id,
)
from durable.runtime.children import ChildHandle, start_child
from durable.runtime.context import now, step_key
from durable.runtime.parallel import DurableFuture, gather, submit
from durable.runtime.queues import Queue
from durable.runtime.registry import (
    MainModuleName,
    RetryPolicy,
    Step,
    Workflow,
    WorkflowOptions,
    step,
    workflow,
)
from durable.runtime.schedules import scheduled
from durable.status import Status

__version__ = "0.1.0"

__all__ = [
    "ChildHandle",
    "DurableFuture",
    "Engine",
    "Event",
    "MainModuleName",
    "Queue",
    "RetryPolicy",
    "Status",
    "Step",
    "Workflow",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowOptions",
    "compensate",
    "continue_as_new",
    "errors",
    "gather",
    "now",
    "patched",
    "randint",
    "random",
    "scheduled",
    "set_event",
    "sleep",
    "start_child",
    "state",
    "step",
    "step_key",
    "submit",
    "time",
    "uuid4",
    "wait_for_signal",
    "workflow",
    "workflow_id",
]


def __getattr__(name: str) -> Any:
    # The pydantic models load on first use: pydantic costs ~80 ms at import.
    if name in ("Event", "WorkflowInfo"):
        from durable import events

        return getattr(events, name)
    raise AttributeError(f"module 'durable' has no attribute {name!r}")
