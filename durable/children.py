"""Child workflows: started by a parent, with deterministic ids, awaited without a thread."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from durable import serialization as ser
from durable.context import ReplayEnd, WorkflowContext, require
from durable.errors import WorkflowCancelled, WorkflowFailed, WorkflowFinished
from durable.registry import Workflow
from durable.replay import CallSite, Recorded


class ChildHandle:
    """A child workflow started with :func:`start_child`; ``result()`` waits durably."""

    def __init__(self, ctx: WorkflowContext, site: CallSite, workflow_id: str,
                 workflow: Workflow, recorded: list[Recorded] | None) -> None:
        self._ctx, self._site, self._recorded = ctx, site, recorded or []
        self.workflow_id, self.workflow = workflow_id, workflow

    def __repr__(self) -> str:
        return f"<ChildHandle {self.workflow_id!r}>"

    def result(self) -> Any:
        """The child's result; the parent is suspended (no thread held) until it ends.

        Raises:
            WorkflowFailed: the child failed (its error is ``__cause__``).
            WorkflowCancelled: the child was cancelled.
        """
        ctx, site = self._ctx, self._site
        for event in self._recorded:
            if event.kind in ("child.completed", "child.failed"):
                return _outcome(self.workflow_id, self.workflow, event.kind, event.encoding,
                                event.payload)
        if ctx.replaying:
            raise ReplayEnd(site)
        row = ctx.engine.store.workflow(self.workflow_id)
        if row is not None and row.finished:
            kind = "child.completed" if row.status == "SUCCESS" else "child.failed"
            encoding, payload = row.output_encoding or ser.JSON, row.output
            if row.status == "CANCELLED":
                encoding, payload = ser.ERROR, ser.encode_error(WorkflowCancelled(row.workflow_id))
            ctx.append(ctx.event(site, kind, encoding, payload))
            self._recorded.append(Recorded(-1, site.call, kind, site.name, site.digest,
                                           site.args, encoding, payload, 0.0))
            return _outcome(self.workflow_id, self.workflow, kind, encoding, payload)
        raise ctx.suspend(status="WAITING", wake_at=None, waiting=f"child {self.workflow_id}",
                          recheck=("child", self.workflow_id))


def _outcome(workflow_id: str, workflow: Workflow, kind: str, encoding: str,
             payload: Any) -> Any:
    if kind == "child.completed":
        return ser.decode(encoding, payload, workflow.returns)
    error = ser.decode_error(payload)
    if isinstance(error, WorkflowCancelled):
        raise error
    raise WorkflowFailed(workflow_id, workflow.name, f"{type(error).__name__}: {error}") \
        from error


def start_child(wf: Workflow, *args: Any, detached: bool = False, **kwargs: Any) -> ChildHandle:
    """Start a child workflow (id ``parent-id/call-N``) and return a handle to wait on.

    A child inherits its parent's deadline and is cancelled when the parent fails or is
    cancelled; ``detached=True`` starts an independent workflow instead.
    """
    ctx = require("start_child")
    site, recorded = ctx.begin("child", wf.name, args, kwargs)
    child_id = f"{ctx.workflow_id}/call-{site.call}"
    if recorded is None:
        engine = ctx.engine
        row = engine._new_row(
            wf, child_id, args, kwargs,
            parent_id=None if detached else ctx.workflow_id,
            deadline=None if detached else ctx.row.deadline,
        )
        # Creating the child is idempotent by its deterministic id, so a crash between
        # these two transactions only means the next replay finds the child already there.
        engine.store.create_workflow(row, [engine._started_event(wf, row, args, kwargs)])
        ctx.append(ctx.event(site, "child.started", ser.JSON,
                             json.dumps({"workflow_id": child_id, "detached": detached})))
        engine._executor.wake()
    return ChildHandle(ctx, site, child_id, wf, recorded)


def run_child(ctx: WorkflowContext, wf: Workflow, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    """A workflow called inside a workflow: start it as a child and wait for it."""
    return start_child(wf, *args, **kwargs).result()


def cancel_children(engine: Any, parent_id: str) -> None:
    """Cancel every unfinished, attached child of ``parent_id``."""
    from durable.control import cancel

    for child in engine.store.workflows(None, None, 10_000, parent_id=parent_id):
        if not child.finished:
            with contextlib.suppress(WorkflowFinished):  # it may have ended meanwhile
                cancel(engine, child.workflow_id)
