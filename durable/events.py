"""Pydantic models of what the engine shows: events of the log and workflow records.

Imported on first use (``durable.Event``), so that ``import durable`` stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from durable import serialization as ser
from durable.replay import Recorded
from durable.status import Status
from durable.store import WorkflowRow


class Event(BaseModel):
    """One event of a workflow's log, with its payload decoded where possible."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    workflow_id: str
    position: int
    call: int
    kind: str
    name: str
    args: str
    encoding: str
    value: Any
    created: datetime

    @classmethod
    def from_recorded(cls, workflow_id: str, event: Recorded) -> Event:
        return cls(
            workflow_id=workflow_id,
            position=event.position,
            call=event.call,
            kind=event.kind,
            name=event.name,
            args=event.args,
            encoding=event.encoding,
            value=readable(event.encoding, event.payload),
            created=datetime.fromtimestamp(event.created, UTC),
        )


class WorkflowInfo(BaseModel):
    """A workflow's status record."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    name: str
    status: Status
    run: int
    parent_id: str | None
    waiting: str | None
    error: str | None
    created: datetime
    updated: datetime

    @classmethod
    def from_row(cls, row: WorkflowRow) -> WorkflowInfo:
        return cls(
            workflow_id=row.workflow_id,
            name=row.name,
            status=Status(row.status),
            run=row.run,
            parent_id=row.parent_id,
            waiting=row.waiting if not row.finished else None,
            error=error_text(row),
            created=datetime.fromtimestamp(row.created, UTC),
            updated=datetime.fromtimestamp(row.updated, UTC),
        )


def error_text(row: WorkflowRow) -> str | None:
    """The one-line error of a workflow: its failure, or why it is stuck."""
    if row.output_encoding == ser.ERROR and row.output is not None:
        return ser.error_summary(row.output)
    if row.error:
        return ser.error_summary(row.error)
    return None


def readable(encoding: str, payload: Any) -> Any:
    """A payload decoded for people: JSON as data, errors as their summary.

    Never unpickles: a pickle runs code chosen by whoever wrote it, and reading a log
    (``durable show``, ``history``, a dashboard) must not. It shows as
    ``<pickle: N bytes>`` (its type is only known by unpickling it).
    """
    if payload is None:
        return None
    if encoding in (ser.JSON, ser.PYDANTIC):
        return json.loads(payload)
    if encoding == ser.ERROR:
        return ser.error_summary(payload)
    if encoding == ser.PICKLE:
        return f"<pickle: {len(payload)} bytes>"
    return f"<{encoding} payload of {len(payload)} bytes>"
