"""Ending a run, and the controls from outside: pause, resume, cancel, fork."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.context import (
    COMPENSATING,
    ReplayEnd,
    Suspend,
    WorkflowContext,
    _run_recorded_step,
)
from durable.errors import (
    SerializationError,
    Unwind,
    WorkflowConflict,
    WorkflowFinished,
    WorkflowTimeout,
)
from durable.registry import find_workflow
from durable.replay import Recorded, family
from durable.status import Status
from durable.store import Fenced, NewEvent, WorkflowRow

if TYPE_CHECKING:
    from durable.engine import Engine, WorkflowHandle

log = logging.getLogger("durable")

_END_KINDS = {
    Status.SUCCESS: "workflow.completed",
    Status.FAILURE: "workflow.failed",
    Status.CANCELLED: "workflow.cancelled",
}
_NOT_FINISHED = "status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')"


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
        from durable.children import cancel_children

        # Before the closing event: after a crash the run ends again, and cancels again.
        cancel_children(ctx.engine, row.workflow_id)
        if ctx.compensations:
            try:
                _mark_compensating(ctx, status, outcome)
                run_compensations(ctx)
            except (Suspend, Fenced):
                return  # a compensation waits for a retry, or we lost the workflow: later
    if status is Status.FAILURE:
        encoding, payload = ser.ERROR, ser.encode_error(outcome)
    elif status is Status.CANCELLED:
        encoding, payload = ser.JSON, None
    position = ctx.position
    ctx.position += 1
    event = NewEvent(position, 0, _END_KINDS[status], row.name, "", "", encoding, payload)
    ctx.engine.store.append(row.workflow_id, ctx.engine.owner, [event], update={
        "status": status.value, "owner": None, "wake_at": None, "wait_signal": None,
        "waiting": None, "control": None, "output_encoding": encoding, "output": payload,
        "error": None,
    }, wake=row.parent_id)


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
    ctx.engine.store.append(ctx.workflow_id, ctx.engine.owner, [marker],
                            update={"control": "compensating"})
    ctx.history.add(Recorded(position, 0, COMPENSATING, ctx.row.name, "", "", ser.JSON,
                             marker.payload, time.time()))


def run_compensations(ctx: WorkflowContext) -> None:
    """Run the registered compensations, newest first, each as a recorded step."""
    ctx.cancelling = True
    for _call, step, args, kwargs in reversed(ctx.compensations):
        try:
            _run_recorded_step(ctx, step, args, kwargs)
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


def pause(engine: Engine, workflow_id: str) -> None:
    at_rest = {"status": "PAUSED", "wake_at": None, "waiting": "resume", "wait_signal": None}
    while True:
        row = _unfinished(engine, workflow_id, "pause")
        if row.status == Status.PAUSED or row.control is not None:
            return  # already paused or pausing; a pending cancel (or compensation) wins
        if engine.store.update(workflow_id, at_rest,
                               f"owner IS NULL AND control IS NULL AND {_NOT_FINISHED}"):
            break
        # Running: it pauses itself at its next recorded call. Both conditions fail only
        # if it was given up or claimed meanwhile: look again.
        if engine.store.update(workflow_id, {"control": "pause"},
                               f"owner IS NOT NULL AND control IS NULL AND {_NOT_FINISHED}"):
            break
    engine._notify()


def resume(engine: Engine, workflow_id: str) -> None:
    _unfinished(engine, workflow_id, "resume")
    # A pause still pending is withdrawn; a pending cancel is left alone.
    engine.store.update(workflow_id, {"control": None}, "control = 'pause'")
    changes = {"status": "RUNNING", "wake_at": time.time(), "waiting": None}
    engine.store.update(workflow_id, changes, "status = 'PAUSED'")
    engine._executor.wake()


def cancel(engine: Engine, workflow_id: str) -> None:
    _unfinished(engine, workflow_id, "cancel")
    # A waiting or paused workflow is woken at once; a running one unwinds at its next
    # call. One that is already compensating goes on doing so.
    engine.store.update(workflow_id, {"control": "cancel", "wake_at": time.time()},
                        f"{_NOT_FINISHED} AND (control IS NULL OR control = 'pause')")
    engine._executor.wake()


def _unfinished(engine: Engine, workflow_id: str, action: str) -> WorkflowRow:
    row = engine._row(workflow_id)
    if row.finished:
        raise WorkflowFinished(workflow_id, row.status, action)
    return row


def fork(engine: Engine, row: WorkflowRow, at: int, new_id: str | None) -> WorkflowHandle:
    """A new workflow with calls 1..``at`` of ``row``'s current run; the rest runs anew."""
    from durable.engine import WorkflowHandle
    from durable.errors import InvalidArgument

    if not isinstance(at, int) or at < 0:
        raise InvalidArgument(f"fork of {row.workflow_id!r}: at must be a call number >= 0")
    events = engine.store.events(row.workflow_id, row.run)
    started = next(e for e in events if e.kind == "workflow.started")
    kept = [e for e in events if 0 < e.call <= at and family(e.kind) != "workflow"]
    # A child that had not ended belongs to the original: the fork starts its own anew
    # (with its own id), instead of waiting for a child that does not exist under it.
    ended = {e.call for e in kept if e.kind in ("child.completed", "child.failed")}
    kept = [e for e in kept if family(e.kind) != "child" or e.call in ended]
    new_id = new_id or f"{row.workflow_id}-fork-{uuid.uuid4().hex[:8]}"
    now = time.time()
    workflow = find_workflow(row.name)
    deadline = now + workflow.timeout if workflow and workflow.timeout is not None else None
    new_row = WorkflowRow(
        workflow_id=new_id, name=row.name, status="PENDING", run=1,
        input_encoding=row.input_encoding, input=row.input, output_encoding=None, output=None,
        error=None, owner=None, lease_until=None, wake_at=now, wait_signal=None, waiting=None,
        control=None, recoveries=0, progress=0, parent_id=None, deadline=deadline, created=now,
        updated=now,
    )
    copied = [
        NewEvent(i, e.call, e.kind, e.name, e.digest, e.args, e.encoding, e.payload)
        for i, e in enumerate([started, *kept])
    ]
    if engine.store.create_workflow(new_row, copied) is not None:
        raise WorkflowConflict(new_id, row.name, row.name)
    engine._executor.wake()
    return WorkflowHandle(engine, new_id)

