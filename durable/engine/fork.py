"""Forking a run: a new workflow that keeps the start of another's history."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from durable.errors import InvalidArgument, WorkflowConflict
from durable.replay import family
from durable.runtime.registry import find_workflow
from durable.store import NewEvent, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine


def fork(engine: Engine, row: WorkflowRow, at: int, new_id: str | None) -> str:
    """A new workflow with calls 1..``at`` of ``row``'s current run; the rest runs anew."""
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
    now = engine.time()
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
    engine.wake()
    return new_id

