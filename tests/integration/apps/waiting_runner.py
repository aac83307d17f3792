"""A worker process for the waiting tests.

``waiting_runner.py DB [NAME ID ARGS-JSON]`` optionally starts a workflow, then serves
(an engine with workers) until every workflow in the database has ended, or 120 s.
It prints ``ready`` once its engine is open.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps import waiting  # noqa: F401  (registers the workflows)

import durable


def main() -> None:
    db = sys.argv[1]
    with durable.Engine(db, workers=4, synchronous="normal", poll_interval=0.01) as engine:
        if len(sys.argv) > 2:
            name, workflow_id = sys.argv[2], sys.argv[3]
            args = json.loads(sys.argv[4]) if len(sys.argv) > 4 else []
            engine.start(name, *args, workflow_id=workflow_id)
        print("ready", flush=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            workflows = engine.list_workflows(limit=100_000)
            if workflows and all(w.status.finished for w in workflows):
                break
            time.sleep(0.02)


if __name__ == "__main__":
    main()
