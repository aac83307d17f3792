"""Child workflows: started by a parent, with deterministic ids, awaited without a thread."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, overload

from typing_extensions import TypeVar

from durable import serialization as ser
from durable.errors import ChildConflict, WorkflowCancelled, WorkflowFailed, WorkflowFinished
from durable.replay import CallSite, Recorded
from durable.runtime.context import (
    INFO,
    ReplayEnd,
    TimedOut,
    WorkflowContext,
    log,
    log_fields,
    require,
)
from durable.runtime.queues import queued_row
from durable.runtime.rows import new_row, started_event

if TYPE_CHECKING:
    from durable.runtime.host import Host
    from durable.runtime.queues import Queue
    from durable.runtime.registry import Workflow
    from durable.store import WorkflowRow

P = ParamSpec("P")
#: The child's result type (``Any`` when not known).
R = TypeVar("R", default=Any)

#: A parent waiting on a detached child (which does not wake it when it ends) looks again
#: after a tenth of the time it has waited so far, within these bounds (seconds).
DETACHED_POLL = (0.05, 60.0)


def child_id(parent_id: str, run: int, call: int) -> str:
    """The deterministic id of the child started by call ``call`` of run ``run``.

    ``parent/call-N`` in a workflow's first run; ``parent/run-R/call-N`` after it
    continued as new, so that a new run never finds the children of an older one.
    """
    return f"{parent_id}/call-{call}" if run == 1 else f"{parent_id}/run-{run}/call-{call}"


class ChildHandle(Generic[R]):
    """A child workflow started with :func:`start_child`; ``result()`` waits durably."""

    def __init__(self, ctx: WorkflowContext, site: CallSite, workflow_id: str,
                 workflow: Workflow[..., R], recorded: list[Recorded] | None,
                 detached: bool) -> None:
        self._ctx, self._site, self._recorded = ctx, site, list(recorded or [])
        self.workflow_id, self.workflow, self.detached = workflow_id, workflow, detached

    def __repr__(self) -> str:
        return f"<ChildHandle {self.workflow_id!r}>"

    def result(self) -> R:
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
        deadline = ctx.row.deadline
        if deadline is not None and not ctx.cancelling and ctx.host.time() >= deadline:
            # Its children share its deadline: the parent fails with its own timeout,
            # not with the timeout of the child it waited for.
            raise TimedOut()
        row = ctx.host.store.workflow(self.workflow_id)
        if row is not None and row.finished:
            kind = "child.completed" if row.status == "SUCCESS" else "child.failed"
            encoding, payload = row.output_encoding or ser.JSON, row.output
            if row.status == "CANCELLED":
                encoding, payload = ser.ERROR, ser.encode_error(WorkflowCancelled(row.workflow_id))
            ctx.append(ctx.event(site, kind, encoding, payload))
            self._recorded.append(Recorded(-1, site.call, kind, site.name, site.digest,
                                           site.args, encoding, payload, 0.0))
            return _outcome(self.workflow_id, self.workflow, kind, encoding, payload)
        wake_at = None
        if self.detached:
            # A detached child has no parent link, so its end wakes nobody: look again.
            now = ctx.host.time()
            started = self._recorded[0].created if self._recorded else now
            low, high = DETACHED_POLL
            wake_at = now + min(high, max(low, (now - started) / 10))
        raise ctx.suspend(status="WAITING", wake_at=wake_at, waiting=f"child {self.workflow_id}",
                          recheck=("child", self.workflow_id))


def _outcome(workflow_id: str, workflow: Workflow[..., R], kind: str, encoding: str,
             payload: Any) -> R:
    if kind == "child.completed":
        value: R = ser.decode(encoding, payload, workflow.returns)
        return value
    error = ser.decode_error(payload)
    if isinstance(error, WorkflowCancelled):
        raise error
    raise WorkflowFailed(workflow_id, workflow.name, f"{type(error).__name__}: {error}") \
        from error


# PEP 612 allows no ``detached=`` between ``*args: P.args`` and ``**kwargs: P.kwargs``:
# the checked form has no ``detached``; with ``detached=`` (or ``queue=``) the arguments
# are unchecked.
@overload
def start_child(wf: Workflow[P, R], /, *args: P.args, **kwargs: P.kwargs) -> ChildHandle[R]: ...
@overload
def start_child(wf: Workflow[..., R], /, *args: Any, detached: bool,
                **kwargs: Any) -> ChildHandle[R]: ...
@overload
def start_child(wf: Workflow[..., R], /, *args: Any, queue: Queue | str,
                priority: int | None = None, detached: bool = False,
                **kwargs: Any) -> ChildHandle[R]: ...
def start_child(wf: Workflow[..., Any], /, *args: Any, **kwargs: Any) -> ChildHandle[Any]:
    """Start a child workflow (id ``parent-id/call-N``) and return a handle to wait on.

    A child inherits its parent's deadline and is cancelled when the parent fails or is
    cancelled; ``detached=True`` starts an independent workflow instead (no parent link,
    no inherited deadline, not cancelled with the parent). With ``queue=`` (and
    ``priority=``) the child is enqueued and runs when its queue's limits allow.

    Example:
        >>> handles = [durable.start_child(resize, image) for image in images]
        >>> sizes = [h.result() for h in handles]
    """
    detached = bool(kwargs.pop("detached", False))
    queue, priority = kwargs.pop("queue", None), kwargs.pop("priority", None)
    return _start(require("start_child"), wf, args, kwargs, detached, queue, priority)


def _start(ctx: WorkflowContext, wf: Workflow[..., R], args: tuple[Any, ...],
           kwargs: dict[str, Any], detached: bool, queue: Queue | str | None = None,
           priority: int | None = None) -> ChildHandle[R]:
    site, recorded = ctx.begin("child", wf.name, args, kwargs)
    new_id = child_id(ctx.workflow_id, ctx.row.run, site.call)
    if recorded is None:
        host = ctx.host
        deadline = None
        if not detached:
            own = None if wf.timeout is None else host.time() + wf.timeout
            limits = [d for d in (ctx.row.deadline, own) if d is not None]
            deadline = min(limits) if limits else None
        parent_id = None if detached else ctx.workflow_id
        if queue is None and priority is None:
            row = new_row(wf, new_id, args, kwargs, host.time(), parent_id=parent_id,
                          deadline=deadline)
        else:
            row = queued_row(wf, new_id, args, kwargs, host.time(), queue=queue,
                             priority=priority, dedup_id=None, begin=None,
                             parent_id=parent_id, deadline=deadline)
        # Creating the child is idempotent by its deterministic id, so a crash between
        # these two transactions only means the next replay finds the child already there.
        started = started_event(wf, row, args, kwargs)
        existing = host.store.create_workflow(row, [started])
        if existing is not None:  # ours from before a crash, or a stranger's: refuse those
            _check_same_child(ctx, site.call, existing, row, started.digest)
        event = ctx.event(site, "child.started", ser.JSON,
                          json.dumps({"workflow_id": new_id, "detached": detached}))
        ctx.append(event)
        host.wake()
        if log.isEnabledFor(INFO):
            log.info("workflow %r (%s) started as call #%d of %r", new_id, wf.name, site.call,
                     ctx.workflow_id, extra={**log_fields(row, 0, "started"),
                                            "parent_id": ctx.workflow_id})
        recorded = [Recorded(event.position, site.call, event.kind, site.name, site.digest,
                             site.args, event.encoding, event.payload, host.time())]
    return ChildHandle(ctx, site, new_id, wf, recorded, detached)


def _check_same_child(ctx: WorkflowContext, call: int, existing: WorkflowRow,
                      row: WorkflowRow, digest: str) -> None:
    """The workflow found under a child's id must be that child (started by this call
    before a crash): same name, same parent, same arguments. Anything else would answer
    the parent with a stranger's result."""
    if existing.name != row.name:
        difference = f"another name ({existing.name!r}, not {row.name!r})"
    elif existing.parent_id != row.parent_id:
        difference = (f"another parent ({existing.parent_id!r}, not {row.parent_id!r})"
                      if existing.parent_id else "no parent (it was started on its own)")
    else:
        first = ctx.host.store.events(existing.workflow_id, 1)[:1]
        if first and first[0].digest == digest:
            return
        difference = "other arguments"
    raise ChildConflict(existing.workflow_id, ctx.workflow_id, call, difference)


def run_child(ctx: WorkflowContext, wf: Workflow[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    """A workflow called inside a workflow: start it as a child and wait for it."""
    return _start(ctx, wf, args, kwargs, detached=False).result()


def cancel_children(host: Host, parent_id: str) -> None:
    """Cancel every unfinished, attached child of ``parent_id``."""
    for child in host.store.workflows(None, None, 10_000, parent_id=parent_id):
        if not child.finished:
            with contextlib.suppress(WorkflowFinished):  # it may have ended meanwhile
                host.cancel(child.workflow_id)
