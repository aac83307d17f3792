"""The task graph of a DAG run, read from its log (and from its definition when known).

A DAG run is the workflow ``durable.dag.run`` whose first argument is the DAG's name;
its tasks are steps named ``dag:<dag>/<task>`` (``:fallback``/``:check`` for a task's
helpers). The log says which tasks ran and how they ended. The edges are not in the log:
they come from the DAG defined in this process (``durable ui -m MODULE``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from durable.dag.catalog import CATALOG
from durable.dag.runner import DAG_WORKFLOW, OUTCOME_EVENT, SKIP_KEY
from durable.replay import Recorded
from durable.store import WorkflowRow
from durable.store.reads import Published


@dataclass(slots=True)
class TaskNode:
    """One task of a DAG run: its state and the tasks it depends on."""

    name: str
    state: str = "PENDING"
    attempts: int = 0
    dependencies: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(slots=True)
class DagView:
    """A DAG run's tasks, and whether the edges are known."""

    dag_name: str
    tasks: dict[str, TaskNode]
    edges_known: bool


def dag_name(row: WorkflowRow) -> str | None:
    """The DAG a run runs, or None when the workflow is not a DAG run."""
    if row.name != DAG_WORKFLOW or row.input_encoding != "json" or row.input is None:
        return None
    try:
        args = json.loads(row.input)[0]
        return str(args[0])
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def dag_view(row: WorkflowRow, events: list[Recorded], published: list[Published]) -> DagView:
    """Tasks coloured by state: from the log, the run's outcome, and the definition."""
    name = dag_name(row) or "?"
    prefix = f"dag:{name}/"
    definition = CATALOG.find(row.workflow_id, name, None, 0.0)
    tasks: dict[str, TaskNode] = {}
    if definition is not None:
        for task in definition.tasks.values():
            tasks[task.name] = TaskNode(task.name, dependencies=list(task.dependencies))
    for event in events:
        if not event.name.startswith(prefix):
            continue
        task_name, _, helper = event.name[len(prefix):].partition(":")
        node = tasks.setdefault(task_name, TaskNode(task_name))
        if helper:
            continue  # a fallback or check: the task's own outcome decides its colour
        node.attempts += 1
        if event.kind == "step.retry":
            node.state = "RETRYING" if node.state != "FAILURE" else node.state
        elif event.kind == "step.failed":
            node.state = "FAILURE"
        elif event.kind == "step.completed" and node.state != "FAILURE":
            node.state = "SKIPPED" if _skipped(event) else "SUCCESS"
    outcome = _outcome(row, published)
    for task_name, reason in outcome.get("skipped", {}).items():
        node = tasks.setdefault(task_name, TaskNode(task_name))
        node.state, node.detail = "SKIPPED", str(reason)
    for task_name, error in outcome.get("failed", {}).items():
        node = tasks.setdefault(task_name, TaskNode(task_name))
        node.state, node.detail = "FAILURE", str(error)
    if row.status in ("RUNNING", "WAITING", "RETRYING"):
        for node in tasks.values():
            if node.state == "PENDING" and all(
                tasks.get(d, TaskNode(d, "SUCCESS")).state == "SUCCESS" for d in node.dependencies
            ) and definition is not None:
                node.state = "READY"
    return DagView(name, tasks, definition is not None)


def _skipped(event: Recorded) -> bool:
    if event.encoding != "json" or not event.payload:
        return False
    try:
        value: Any = json.loads(event.payload)
    except ValueError:
        return False
    return isinstance(value, dict) and SKIP_KEY in value


def _outcome(row: WorkflowRow, published: list[Published]) -> dict[str, Any]:
    """``{"results", "skipped", "failed"}`` of a run that ended, from its result or from
    the event it publishes when it fails."""
    texts = []
    if row.status == "SUCCESS" and row.output_encoding == "json":
        texts.append(row.output)
    texts += [p.payload for p in published if p.key == OUTCOME_EVENT and p.encoding == "json"]
    for text in texts:
        try:
            value = json.loads(text)
        except (ValueError, TypeError):
            continue
        if isinstance(value, dict):
            return value
    return {}
