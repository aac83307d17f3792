"""Running one workflow run by replay until it ends or suspends, and replaying a run
against the current code without running anything."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from durable import serialization as ser
from durable.errors import (
    NonDeterminismError,
    RecoveryLimitExceeded,
    StorageError,
    UnknownWorkflow,
    Unwind,
    WorkflowFailed,
    WorkflowTerminated,
    WorkflowTimeout,
)
from durable.replay import History
from durable.runtime.calls import ContinueAsNew
from durable.runtime.context import (
    INFO,
    Cancelled,
    ReplayEnd,
    Suspend,
    TimedOut,
    WorkflowContext,
    current_context,
    log_fields,
)
from durable.runtime.ending import finish, replay_compensations
from durable.runtime.host import Host
from durable.runtime.registry import Workflow, find_workflow
from durable.runtime.rows import decode_input, encode_input, outcome
from durable.status import Status
from durable.store import Fenced, NewEvent, StorageFailed, WorkflowRow

log = logging.getLogger("durable")

#: A workflow whose code diverged is tried again this often (a fixed deploy may land).
DIVERGED_RETRY_S = 60.0


def _invoke(workflow: Workflow[..., Any], row: WorkflowRow) -> Any:
    args, kwargs = decode_input(row)
    if workflow.is_async:
        return asyncio.run(workflow.fn(*args, **kwargs))
    return workflow.fn(*args, **kwargs)


def execute(host: Host, row: WorkflowRow | None) -> None:
    """Run one claimed workflow by replay until it ends or suspends."""
    while row is not None:
        row = _execute_run(host, row)


def _execute_run(host: Host, row: WorkflowRow) -> WorkflowRow | None:
    """Run one run of a workflow; the next run's row if it continued as new."""
    workflow = find_workflow(row.name)
    if workflow is None:
        error = UnknownWorkflow(row.workflow_id, row.name)
        log.warning("%s", error)
        _set_aside(host, row, error, Status.WAITING, "a worker that imports its module")
        return None
    history = History(host.store.events(row.workflow_id, row.run))
    ctx = WorkflowContext(host, row, history)
    if len(history) > 1 and log.isEnabledFor(INFO):
        log.info("workflow %r (%s) resumed: replaying %d recorded events", row.workflow_id,
                 row.name, len(history), extra=log_fields(row, 0, "resumed", events=len(history)))
    limit = host.max_recoveries if workflow.max_recoveries is None else workflow.max_recoveries
    if row.recoveries > limit:
        finish(ctx, Status.FAILURE, RecoveryLimitExceeded(row.workflow_id, row.recoveries))
        return None
    token = current_context.set(ctx)
    try:
        value = _invoke(workflow, row)
        if ctx.diverged is None:
            ctx.check_all_replayed()
    except Suspend:
        return None
    except StorageFailed:
        raise  # the engine releases the workflow for a retry with backoff
    except Fenced:
        return None
    except ContinueAsNew as new:
        return _continue_as_new(host, ctx, workflow, new)
    except Cancelled:
        finish(ctx, Status.CANCELLED, None)
        return None
    except TimedOut:
        finish(ctx, Status.FAILURE, WorkflowTimeout(row.workflow_id, workflow.timeout or 0.0))
        return None
    except NonDeterminismError as error:
        ctx.diverged = ctx.diverged or error
    except Unwind:
        raise
    except BaseException as error:  # sys.exit() in a workflow, too: a failure, not a hang
        if isinstance(error, StorageError) and error.path == host.store.path:
            # This engine's storage failed (a read): not the workflow's fault; retried.
            raise StorageFailed(row.workflow_id, error) from error
        if ctx.diverged is None:
            finish(ctx, Status.FAILURE, error)
            return None
    finally:
        current_context.reset(token)
    if ctx.diverged is not None:
        log.error("%s", ctx.diverged, extra=log_fields(row, ctx.diverged.call, "diverged"))
        _set_aside(host, row, ctx.diverged, Status.DIVERGED, "code that replays its history")
        return None
    finish(ctx, Status.SUCCESS, value)
    return None


def _continue_as_new(host: Host, ctx: WorkflowContext, workflow: Workflow[..., Any],
                     new: ContinueAsNew) -> WorkflowRow | None:
    """Close this run and run the same id again at once, with a fresh log."""
    row = ctx.row
    encoding, payload = encode_input(row.workflow_id, workflow, new.args_, new.kwargs)
    run = row.run + 1
    closing = finish_event(ctx, "workflow.continued", encoding, payload)
    started = NewEvent(closing.position + 1, 0, "workflow.started", row.name,
                       *ser.digest_text(new.args_, new.kwargs), encoding, payload, run=run)
    host.store.append(row.workflow_id, host.owner, [closing, started], update={
        "run": run, "input_encoding": encoding, "input": payload, "recoveries": 0,
    }, now=host.time())
    return host.store.workflow(row.workflow_id)


def _set_aside(host: Host, row: WorkflowRow, error: Exception, status: Status,
               waiting: str) -> None:
    """Leave a workflow unfinished with ``error`` shown, to be tried again later:
    ``DIVERGED`` when its code no longer replays, ``WAITING`` when no code here runs it."""
    control = host.store.append(row.workflow_id, host.owner, [], update={
        "status": status.value, "owner": None, "error": ser.encode_error(error),
        "waiting": waiting, "wake_at": host.time() + DIVERGED_RETRY_S,
    }, now=host.time())
    if control != "cancel":
        return
    # A pending cancel refused the set-aside (we still own it). Unknown here: another
    # worker may know its code; let it go until then, the cancel still pending.
    if status is not Status.DIVERGED:
        host.store.crashed(host.owner, row.workflow_id, host.time() + DIVERGED_RETRY_S)
        host.store.release(host.owner, row.workflow_id, now=host.time())
    else:
        # Cancelling needs a replay (for its compensations) that this code cannot make:
        # end it CANCELLED now rather than hold it forever.
        log.warning("workflow %r: cancelled without compensations, since its code cannot "
                    "replay it (%s)", row.workflow_id, error)
        host.store.terminate(row.workflow_id, host.time(), Status.CANCELLED.value, ser.JSON,
                             None)


def replay(host: Host, row: WorkflowRow, workflow: Workflow[..., Any] | None = None,
           context: type[WorkflowContext] = WorkflowContext) -> Any:
    """Replay a workflow's history against the current code, running no step.

    ``workflow`` is the function to replay (default: the one registered under the
    recorded name); ``context`` the replay context's class (a debugger's, say).
    """
    workflow = workflow or find_workflow(row.name)
    if workflow is None:
        raise UnknownWorkflow(row.workflow_id, row.name)
    ctx = context(host, row, History(host.store.events(row.workflow_id, row.run)),
                  replaying=True)
    token = current_context.set(ctx)
    try:
        value = _invoke(workflow, row)
    except ReplayEnd as end:
        if ctx.diverged is not None:
            raise ctx.diverged from None
        if _terminated(row):
            return outcome(row)  # ended from outside where its log ends: WorkflowFailed
        if row.status in (Status.SUCCESS, Status.FAILURE):
            raise ctx.divergence(end.site, None) from None
        return None
    except NonDeterminismError:
        raise
    except (Cancelled, TimedOut):  # where a cancelled or timed-out run stopped
        if replay_compensations(ctx):
            ctx.check_all_replayed()
        if not row.finished:
            return None
        return outcome(row)  # raises WorkflowCancelled, or WorkflowFailed
    except Unwind:
        raise
    except BaseException as error:
        if ctx.diverged is not None:
            raise ctx.diverged from None
        if replay_compensations(ctx):
            ctx.check_all_replayed()
        if row.status == Status.SUCCESS:
            raise NonDeterminismError(
                row.workflow_id, ctx.call, "a successful end", f"raise {error!r}", "replay",
                "the workflow now fails where its history succeeded",
            ) from error
        raise WorkflowFailed(row.workflow_id, row.name, f"{type(error).__name__}: {error}") \
            from error
    finally:
        current_context.reset(token)
    if ctx.diverged is not None:
        raise ctx.diverged
    ctx.check_all_replayed()
    if _terminated(row):
        return outcome(row)
    if row.status == Status.FAILURE:
        raise NonDeterminismError(
            row.workflow_id, ctx.call, "a failure", "a successful return", "replay",
            "the workflow now succeeds where its history failed",
        )
    if row.status == Status.SUCCESS:
        _check_result(row, workflow, value, ctx.call)
    return value


def _terminated(row: WorkflowRow) -> bool:
    """Did ``engine.terminate`` end this workflow (its log stops wherever it was)?"""
    if row.status != Status.FAILURE or not row.output:
        return False
    return isinstance(ser.decode_error(row.output), WorkflowTerminated)


def _check_result(row: WorkflowRow, workflow: Workflow, value: Any, call: int) -> None:
    """The replayed result must be the recorded one: equal and of exactly the same types,
    or the same encoding (a pickle's bytes may differ for equal values)."""
    recorded = outcome(row)
    if ser.same_value(recorded, value):
        return
    raise NonDeterminismError(
        row.workflow_id, call, f"the result {_short(recorded)}",
        f"a return of {_short(value)}", "replay",
        "the workflow now returns another result than the one recorded",
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def finish_event(ctx: WorkflowContext, kind: str, encoding: str, payload: Any) -> NewEvent:
    """The closing event of a run (call 0: the workflow itself)."""
    position = ctx.position
    ctx.position += 1
    return NewEvent(position, 0, kind, ctx.row.name, "", "", encoding, payload)
