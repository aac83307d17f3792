"""Ending a run, and the controls from outside: pause, resume, cancel, fork."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.context import Cancelled, Suspend, WorkflowContext, _run_recorded_step
from durable.errors import SerializationError, WorkflowConflict, WorkflowFinished
from durable.registry import find_workflow
from durable.replay import family
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
    """End the run: compensations first (failure, cancel), then the closing event.

    ``outcome`` is the result for SUCCESS and the error for FAILURE.
    """
    row = ctx.row
    if status is not Status.SUCCESS and ctx.compensations:
        try:
            run_compensations(ctx)
        except (Suspend, Fenced):
            return  # a compensation waits for a retry, or we lost the workflow: later
    payload: str | bytes | None = None
    encoding = ser.JSON
    if status is Status.SUCCESS:
        workflow = find_workflow(row.name)
        try:
            encoding, payload = ser.encode(outcome, workflow.returns if workflow else None)
        except ser.Unserializable as error:
            status = Status.FAILURE
            outcome = SerializationError(row.workflow_id, 0, f"result of workflow {row.name}",
                                         error.type_name, error.reason)
    if status is Status.FAILURE:
        encoding, payload = ser.ERROR, ser.encode_error(outcome)
    position = ctx.position
    ctx.position += 1
    event = NewEvent(position, 0, _END_KINDS[status], row.name, "", "", encoding, payload)
    ctx.engine.store.append(row.workflow_id, ctx.engine.owner, [event], update={
        "status": status.value, "owner": None, "wake_at": None, "wait_signal": None,
        "waiting": None, "control": None, "output_encoding": encoding, "output": payload,
        "error": None,
    }, wake=row.parent_id)
    if status is not Status.SUCCESS:
        from durable.children import cancel_children

        cancel_children(ctx.engine, row.workflow_id)


def run_compensations(ctx: WorkflowContext) -> None:
    """Run the registered compensations, newest first, each as a recorded step."""
    ctx.cancelling = True  # a pending cancel must not interrupt the clean-up it asked for
    for _call, step, args, kwargs in reversed(ctx.compensations):
        try:
            _run_recorded_step(ctx, step, args, kwargs)
        except (Suspend, Fenced, Cancelled):
            raise
        except Exception:
            log.exception("workflow %r: compensation %s failed after its retries; "
                          "continuing with the others", ctx.workflow_id, step.name)


def pause(engine: Engine, workflow_id: str) -> None:
    row = _unfinished(engine, workflow_id, "pause")
    if row.status == Status.PAUSED:
        return
    at_rest = {"status": "PAUSED", "wake_at": None, "waiting": "resume", "wait_signal": None}
    if not engine.store.update(workflow_id, at_rest, f"owner IS NULL AND {_NOT_FINISHED}"):
        # Running: it pauses itself at its next recorded call.
        engine.store.update(workflow_id, {"control": "pause"}, _NOT_FINISHED)
    engine._notify()


def resume(engine: Engine, workflow_id: str) -> None:
    _unfinished(engine, workflow_id, "resume")
    changes = {"status": "RUNNING", "wake_at": time.time(), "waiting": None, "control": None}
    if not engine.store.update(workflow_id, changes, "status = 'PAUSED'"):
        engine.store.update(workflow_id, {"control": None}, "control = 'pause'")
    engine._executor.wake()


def cancel(engine: Engine, workflow_id: str) -> None:
    _unfinished(engine, workflow_id, "cancel")
    # A waiting workflow is woken at once; a running one unwinds at its next call.
    engine.store.update(workflow_id, {"control": "cancel", "wake_at": time.time()},
                        _NOT_FINISHED)
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
    new_id = new_id or f"{row.workflow_id}-fork-{uuid.uuid4().hex[:8]}"
    now = time.time()
    new_row = WorkflowRow(
        workflow_id=new_id, name=row.name, status="PENDING", run=1,
        input_encoding=row.input_encoding, input=row.input, output_encoding=None, output=None,
        error=None, owner=None, lease_until=None, wake_at=now, wait_signal=None, waiting=None,
        control=None, recoveries=0, progress=0, parent_id=None, deadline=None, created=now,
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

