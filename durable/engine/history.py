"""A run's history as JSON (``engine.export(id)``, ``durable export ID``) and back into a
database, to replay it elsewhere (``durable.testing.replay``, ``durable replay
--from-file``).

The format, version 1::

    {"format": "durable.history", "version": 1, "exported_at": "2026-12-03T13:00:00+00:00",
     "workflow": {"workflow_id": ..., "name": ..., "status": ..., "run": ...,
                  "input_encoding": ..., "input": ..., "output_encoding": ..., "output": ...,
                  "error": ..., "parent_id": ..., "deadline": ..., "created": ...,
                  "updated": ...},
     "events": [{"position": 0, "call": 0, "kind": "workflow.started", "name": ...,
                 "digest": ..., "args": ..., "encoding": ..., "payload": ...,
                 "created": ...}, ...]}

``events`` are those of the workflow's current run (a run that continued as new starts a
fresh log). Payloads are kept as the log holds them: JSON text as a string, binary
(``pickle``/``error`` encodings) as ``{"base64": "..."}``. Times are seconds since the
epoch. A reader refuses another ``format`` or a newer ``version``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durable.errors import InvalidArgument, WorkflowConflict
from durable.store import NewEvent, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine

FORMAT = "durable.history"
VERSION = 1
_ROW_FIELDS = ("workflow_id", "name", "status", "run", "input_encoding", "input",
               "output_encoding", "output", "error", "parent_id", "deadline", "created",
               "updated")
_EVENT_FIELDS = ("position", "call", "kind", "name", "digest", "args", "encoding", "payload",
                 "created")


def _out(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _in(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    return value


def export(engine: Engine, workflow_id: str) -> dict[str, Any]:
    """The history of ``workflow_id``'s current run, as a JSON-ready dict."""
    row = engine.row(workflow_id)
    events = engine.store.events(workflow_id, row.run)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workflow": {name: _out(getattr(row, name)) for name in _ROW_FIELDS},
        "events": [{name: _out(getattr(e, name)) for name in _EVENT_FIELDS} for e in events],
    }


def parse(text: str) -> dict[str, Any]:
    """A history from JSON text, checked for its format and version.

    Raises:
        InvalidArgument: not a durable history, or one newer than this version reads.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(
            f"not a durable history: invalid JSON ({error.msg}, line {error.lineno}); "
            "write one with `durable export ID > run.json` or engine.export(id)"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgument(
            f"not a durable history (no \"format\": \"{FORMAT}\"); write one with "
            "`durable export ID > run.json` or engine.export(id)"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InvalidArgument(
            f"durable history version {version!r}: this durable reads versions up to "
            f"{VERSION}; upgrade durable to replay it"
        )
    return data


def load(engine: Engine, data: dict[str, Any]) -> WorkflowRow:
    """Write a parsed history into ``engine``'s database (a new workflow, not owned by
    anyone, in the state it was exported in); return its row."""
    fields = {name: _in(data["workflow"].get(name)) for name in _ROW_FIELDS}
    row = WorkflowRow(**fields, owner=None, lease_until=None, wake_at=None, wait_signal=None,
                      waiting=None, control=None, recoveries=0, progress=0)
    events = [NewEvent(e["position"], e["call"], e["kind"], e["name"], e["digest"], e["args"],
                       e["encoding"], _in(e["payload"]), row.run) for e in data["events"]]
    if engine.store.create_workflow(row, events) is not None:
        raise WorkflowConflict(row.workflow_id, "an existing workflow", row.name)
    return engine.row(row.workflow_id)
