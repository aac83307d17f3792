"""DAG runner: pipelines of tasks with dependencies, run durably.

A DAG run is a durable workflow whose steps are its tasks, identified by name: a run that
was interrupted (a crash, ``kill -9``) resumes with ``run(run_id=...)`` and finished tasks
do not run again.

Example:
    >>> from durable.dag import Task, Workflow
    >>> workflow = Workflow(name="etl")
    >>> workflow.add_task(Task(name="task1", func=lambda: "result1"))
    >>> workflow.add_task(Task(name="task2", dependencies=["task1"],
    ...     func=lambda: f"processed {workflow.get_task_result('task1')}"))
    >>> workflow.run(run_id="etl-1")
    {'task1': 'result1', 'task2': 'processed result1'}
"""

from __future__ import annotations

from durable.dag import tasks
from durable.dag.builder import WorkflowBuilder
from durable.dag.model import Task, TaskRun, TaskState, map_task, reduce_task
from durable.dag.patterns import CircuitBreaker, Fallback
from durable.dag.report import RunReport, TaskRow
from durable.dag.workflow import Workflow

__all__ = [
    "CircuitBreaker",
    "Fallback",
    "RunReport",
    "Task",
    "TaskRow",
    "TaskRun",
    "TaskState",
    "Workflow",
    "WorkflowBuilder",
    "map_task",
    "reduce_task",
    "tasks",
]
