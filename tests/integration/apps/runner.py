"""Run crash-test workflows in a child process: ``runner.py DB start NAME ID [ARGS-JSON]``
starts one and waits for it; ``runner.py DB recover`` opens an engine (which recovers
interrupted workflows) and waits until every workflow has ended."""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps import crashy  # noqa: F401  (registers the workflows)

import durable


def main() -> None:
    db, command = sys.argv[1], sys.argv[2]
    with durable.Engine(db, workers=4, poll_interval=0.01) as engine:
        if command == "start":
            name, workflow_id = sys.argv[3], sys.argv[4]
            args = json.loads(sys.argv[5]) if len(sys.argv) > 5 else []
            print(json.dumps(engine.start(name, *args, workflow_id=workflow_id).result()))
        elif command == "recover":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(w.status.finished for w in engine.list_workflows(limit=10_000)):
                    break
                time.sleep(0.02)
            for info in engine.list_workflows(limit=10_000):
                print(json.dumps({"id": info.workflow_id, "status": info.status.value}))


if __name__ == "__main__":
    main()
