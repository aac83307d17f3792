"""The public surface is durable/__init__.py's __all__: pinned, so a change to it is a
deliberate one (and DESIGN.md's names are all there)."""

from __future__ import annotations

import durable

PUBLIC = {
    "ChildHandle", "DurableFuture", "Engine", "Event", "MainModuleName", "Queue",
    "RetryPolicy", "Status", "Step", "Workflow", "WorkflowHandle", "WorkflowInfo",
    "WorkflowOptions", "compensate", "continue_as_new", "errors", "gather", "now", "patched",
    "randint", "random", "scheduled", "set_event", "sleep", "start_child", "state", "step",
    "step_key", "submit", "time", "uuid4", "wait_for_signal", "workflow", "workflow_id",
}


def test_the_public_names_are_exactly_the_pinned_ones() -> None:
    assert set(durable.__all__) == PUBLIC
    assert len(durable.__all__) == len(PUBLIC)


def test_every_public_name_resolves() -> None:
    for name in durable.__all__:
        assert getattr(durable, name) is not None, name


def test_the_engine_has_every_method_the_contract_names() -> None:
    for method in ("start", "run", "handle", "send_signal", "pause", "resume", "cancel",
                   "terminate", "get_event", "list_workflows", "history", "replay", "fork",
                   "start_many", "retry", "prune", "schedule", "unschedule", "schedules",
                   "export"):
        assert callable(getattr(durable.Engine, method)), method
    for method in ("status", "result", "signal", "pause", "resume", "cancel", "history"):
        assert callable(getattr(durable.WorkflowHandle, method)), method
