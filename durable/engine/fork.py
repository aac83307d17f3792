"""Forking a run: a new workflow that keeps the start of another's history."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from durable.errors import InvalidArgument, WorkflowConflict
from durable.replay import Recorded, family
from durable.runtime.registry import find_workflow
from durable.store import NewEvent, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine

log = logging.getLogger("durable")


def fork(engine: Engine, row: WorkflowRow, at: int, new_id: str | None) -> str:
    """A new workflow with calls 1..``at`` of ``row``'s current run; the rest runs anew.

    The events it keeps that published a value (``set_event``) are published again under
    the new id. Steps after ``at`` that had already run are named in a warning on the
    ``durable`` logger: the fork runs them again.

    Raises:
        InvalidArgument: ``at`` is negative or past the last recorded call.
    """
    if type(at) is not int or at < 0:
        raise InvalidArgument(f"fork of {row.workflow_id!r}: at must be a call number >= 0")
    events = engine.store.events(row.workflow_id, row.run)
    started = next(e for e in events if e.kind == "workflow.started")
    last = max((e.call for e in events), default=0)
    if at > last:
        raise InvalidArgument(
            f"fork of {row.workflow_id!r} at call #{at}: its history ends at call #{last}"
            + (f" ({_last_call(events, last)})" if last else "")
            + f"; choose --at between 0 and {last}."
        )
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
    # In log order, so the latest value of a key wins, as it did in the original.
    publish: list[tuple[str, str, Any]] = [
        (e.name, e.encoding, e.payload) for e in kept if e.kind == "event.set"
    ]
    if engine.store.create_workflow(new_row, copied, publish) is not None:
        raise WorkflowConflict(new_id, row.name, row.name)
    rerun = _steps_run_again(events, at)
    if rerun:
        log.warning("fork %r of workflow %r at call #%d runs again step(s) that already ran "
                    "in the original: %s", new_id, row.workflow_id, at, ", ".join(rerun))
    engine.wake()
    return new_id


def _last_call(events: list[Recorded], call: int) -> str:
    return next(e.describe() for e in events if e.call == call)


def _steps_run_again(events: list[Recorded], at: int) -> list[str]:
    """``#call name`` of each step after ``at`` that ran at least once (it completed,
    failed or was retried): the fork runs it again, with whatever effects it has."""
    ran: dict[int, str] = {}
    for e in events:
        if e.call > at and e.kind in ("step.completed", "step.failed", "step.retry"):
            ran.setdefault(e.call, e.name)
    return [f"#{call} {name}" for call, name in sorted(ran.items())]
