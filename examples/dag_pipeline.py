"""The classic three-task pipeline, as a DAG: extract -> transform -> load.

    python examples/dag_pipeline.py [DB]

Each task is a recorded step of one durable workflow, so running the script again with
the same database and run id runs nothing: the results come back from the log. Kill it
half-way (Ctrl-C, `kill -9`) and run it again: it resumes where it stopped.
"""

from __future__ import annotations

import os
import sys
import tempfile

import durable
from durable.dag import Task, TaskState, Workflow


def main(db: str) -> None:
    with durable.Engine(db) as engine:
        workflow = Workflow(name="classic", engine=engine)

        def extract() -> list[int]:
            print("  extract: reading the source")
            return [3, 1, 4, 1, 5, 9, 2, 6]

        def transform(extract: list[int]) -> list[int]:  # receives extract's result
            print("  transform: squaring and sorting")
            return sorted(x * x for x in extract)

        def load() -> str:
            rows = workflow.get_task_result("transform")  # the other way to read a result
            print(f"  load: writing {len(rows)} rows")
            return f"loaded {len(rows)} rows, max {rows[-1]}"

        workflow.add_task(Task(name="extract", func=extract, max_retries=2, retry_delay=0.5))
        workflow.add_task(Task(name="transform", func=transform, dependencies=["extract"]))
        workflow.add_task(Task(name="load", func=load, dependencies=["transform"],
                               timeout=10.0))

        results = workflow.run(run_id="classic-1")
        print(f"result: {results['load']}")
        assert all(task.state is TaskState.SUCCESS for task in workflow)
        print(workflow.report())
        print(workflow.to_mermaid())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(tempfile.mkdtemp(prefix="durable-"), "dag_pipeline.db"))
