"""A workflow's row and first event, its arguments and its outcome, as the log keeps them."""

from __future__ import annotations

import inspect
import json
from typing import Any

from durable import serialization as ser
from durable.errors import (
    InvalidArgument,
    SerializationError,
    WorkflowCancelled,
    WorkflowFailed,
    argument_fix,
)
from durable.runtime.registry import Workflow, find_workflow
from durable.status import Status
from durable.store import NewEvent, WorkflowRow


def new_row(
    workflow: Workflow,
    workflow_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    now: float,
    parent_id: str | None = None,
    deadline: float | None = None,
) -> WorkflowRow:
    """The row of a workflow about to start (``PENDING``, runnable at once)."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise InvalidArgument(f"workflow_id must be a non-empty string, not {workflow_id!r}")
    encoding, payload = encode_input(workflow_id, workflow, args, kwargs)
    if workflow.timeout is not None and deadline is None:
        deadline = now + workflow.timeout
    return WorkflowRow(
        workflow_id=workflow_id, name=workflow.name, status="PENDING", run=1,
        input_encoding=encoding, input=payload, output_encoding=None, output=None,
        error=None, owner=None, lease_until=None, wake_at=now, wait_signal=None,
        waiting=None, control=None, recoveries=0, progress=0, parent_id=parent_id,
        deadline=deadline, created=now, updated=now,
    )


def started_event(
    workflow: Workflow, row: WorkflowRow, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> NewEvent:
    """The first event of a run: call 0, the workflow and its arguments."""
    return NewEvent(0, 0, "workflow.started", workflow.name, *ser.digest_text(args, kwargs),
                    row.input_encoding, row.input)


def encode_input(
    workflow_id: str, workflow: Workflow, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, Any]:
    """A workflow's arguments for the log: JSON when plain, cloudpickle otherwise."""
    try:
        return ser.encode([list(args), kwargs])
    except ser.Unserializable as error:
        name, culprit = _culprit(workflow, args, kwargs, error)
        raise SerializationError(
            workflow_id, 0, f"argument {name} of workflow {workflow.name}", culprit.type_name,
            culprit.reason, argument_fix(culprit.type_name),
        ) from error


def _culprit(workflow: Workflow[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             error: ser.Unserializable) -> tuple[str, ser.Unserializable]:
    """The argument that cannot be recorded (by its parameter's name) and its error."""
    try:
        named = dict(inspect.signature(workflow.fn).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        named = {**{f"#{i + 1}": value for i, value in enumerate(args)}, **kwargs}
    for name, value in named.items():
        try:
            ser.encode(value)
        except ser.Unserializable as found:
            return repr(name) if not name.startswith("#") else name, found
    return "list", error


def decode_input(row: WorkflowRow) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A run's arguments, as recorded in its row."""
    args, kwargs = ser.decode(row.input_encoding, row.input)
    return tuple(args), dict(kwargs)


def outcome(row: WorkflowRow) -> Any:
    """The result of a finished workflow, or raise how it ended.

    Raises:
        WorkflowCancelled: it was cancelled.
        WorkflowFailed: it failed (the recorded error is ``__cause__``).
    """
    if row.status == Status.SUCCESS:
        workflow = find_workflow(row.name)
        annotation = workflow.returns if workflow else None
        if row.output_encoding == ser.PYDANTIC and annotation is None:
            return json.loads(row.output)
        return ser.decode(row.output_encoding or ser.JSON, row.output, annotation)
    if row.status == Status.CANCELLED:
        raise WorkflowCancelled(row.workflow_id)
    error = ser.decode_error(row.output) if row.output else None
    summary = ser.error_summary(row.output) if row.output else row.status
    raise WorkflowFailed(row.workflow_id, row.name, summary) from error
