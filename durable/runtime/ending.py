"""Ending a run: its closing event, and on failure or cancel its children cancelled and
its compensations run (or, in replay, checked against the log)."""

from __future__ import annotations

import json
import logging
from typing import Any

from durable import serialization as ser
from durable.errors import SerializationError, Unwind, WorkflowTimeout
from durable.replay import Recorded
from durable.runtime.children import cancel_children
from durable.runtime.context import (
    COMPENSATING,
    INFO,
    ReplayEnd,
    Suspend,
    WorkflowContext,
    log_fields,
)
from durable.runtime.registry import find_workflow
from durable.runtime.steps import run_recorded_step
from durable.status import Status
from durable.store import Fenced, NewEvent, StorageFailed

log = logging.getLogger("durable")

_END_KINDS = {
    Status.SUCCESS: "workflow.completed",
    Status.FAILURE: "workflow.failed",
    Status.CANCELLED: "workflow.cancelled",
}
def finish(ctx: WorkflowContext, status: Status, outcome: Any) -> None:
    """End the run: on failure or cancel, cancel its children and run its compensations,
    then append the closing event.

    ``outcome`` is the result for SUCCESS and the error for FAILURE.
    """
    row = ctx.row
    payload: str | bytes | None
    if status is Status.SUCCESS:
        workflow = find_workflow(row.name)
        try:
            encoding, payload = ser.encode(outcome, workflow.returns if workflow else None)
        except ser.Unserializable as error:
            status = Status.FAILURE
            outcome = SerializationError(row.workflow_id, 0, f"result of workflow {row.name}",
                                         error.type_name, error.reason)
    if status is not Status.SUCCESS:
        # Before the closing event: after a crash the run ends again, and cancels again.
        cancel_children(ctx.host, row.workflow_id)
        if ctx.compensations:
            try:
                _mark_compensating(ctx, status, outcome)
                run_compensations(ctx)
            except StorageFailed:
                raise  # the engine releases the workflow for a retry
            except (Suspend, Fenced):
                return  # a compensation waits for a retry, or we lost the workflow: later
    if status is Status.FAILURE:
        encoding, payload = ser.ERROR, ser.encode_error(outcome)
    elif status is Status.CANCELLED:
        encoding, payload = ser.JSON, None
    position = ctx.position
    ctx.position += 1
    event = NewEvent(position, 0, _END_KINDS[status], row.name, "", "", encoding, payload)
    control = ctx.host.store.append(row.workflow_id, ctx.host.owner, [event], update={
        "status": status.value, "owner": None, "wake_at": None, "wait_signal": None,
        "waiting": None, "control": None, "output_encoding": encoding, "output": payload,
        "error": None,
    }, wake=row.parent_id, now=ctx.host.time())
    if control == "cancel" and status is Status.SUCCESS:
        # A cancel accepted after the last call: the store wrote nothing; end CANCELLED.
        ctx.position -= 1
        finish(ctx, Status.CANCELLED, None)
        return
    if log.isEnabledFor(INFO):
        _log_end(ctx, status, outcome)


def _log_end(ctx: WorkflowContext, status: Status, outcome: Any) -> None:
    row = ctx.row
    duration = ctx.host.time() - row.created
    extra = log_fields(row, ctx.call, status.value.lower(), status=status.value, duration=duration)
    if status is Status.FAILURE:
        extra["error"] = f"{type(outcome).__name__}: {outcome}"
        log.warning("workflow %r (%s) failed after %.3f s at call #%d: %s", row.workflow_id,
                    row.name, duration, ctx.call, extra["error"], extra=extra)
    else:
        log.info("workflow %r (%s) finished %s in %.3f s (%d calls)", row.workflow_id,
                 row.name, status.value, duration, ctx.call, extra=extra)


def _mark_compensating(ctx: WorkflowContext, status: Status, outcome: Any) -> None:
    """Record where the body stopped, once, before the first compensation.

    A run re-executed after a crash or a retry backoff stops at the same call (see
    ``WorkflowContext.unwound``), so its compensations keep their call numbers. The row's
    control becomes ``compensating``: a later pause or cancel no longer applies.
    """
    ctx.cancelling = True  # a pending cancel must not interrupt the clean-up it asked for
    if any(e.kind == COMPENSATING for e in ctx.history.of(0) or ()):
        return
    if status is Status.CANCELLED:
        reason = "cancel"
    elif isinstance(outcome, WorkflowTimeout):
        reason = "timeout"
    else:
        reason = "failure"
    position = ctx.position
    ctx.position += 1
    marker = NewEvent(position, 0, COMPENSATING, ctx.row.name, "", "", ser.JSON,
                      json.dumps({"at": ctx.call, "reason": reason}))
    ctx.host.store.append(ctx.workflow_id, ctx.host.owner, [marker],
                          update={"control": "compensating"}, now=ctx.host.time())
    ctx.history.add(Recorded(position, 0, COMPENSATING, ctx.row.name, "", "", ser.JSON,
                             marker.payload, ctx.host.time()))


def run_compensations(ctx: WorkflowContext) -> None:
    """Run the registered compensations, newest first, each as a recorded step."""
    ctx.cancelling = True
    for _call, step, args, kwargs in reversed(ctx.compensations):
        try:
            run_recorded_step(ctx, step, args, kwargs)
        except Unwind:
            raise
        except BaseException:
            if not ctx.replaying:
                log.exception("workflow %r: compensation %s failed after its retries; "
                              "continuing with the others", ctx.workflow_id, step.name)


def replay_compensations(ctx: WorkflowContext) -> bool:
    """Replay mode: check the compensations of a failed or cancelled run against the log.

    Returns False when the log ends among them (the run is still compensating).
    """
    try:
        run_compensations(ctx)
    except ReplayEnd:
        return False
    return True
