"""One of many processes appending to one database at once:
``appender.py DB INDEX COUNT STEPS``.

Once $GO_FILE exists, opens its own engine (a new file is created by whichever process
comes first), starts COUNT workflows of STEPS steps (ids ``p{INDEX}-{k}``), waits
for every result and prints them as JSON. Any error (a "database is locked" one included)
ends the process with a traceback and a non-zero status."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from apps import effects

import durable


def main() -> None:
    db, index, count, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    effects._hold_until(os.environ.get("GO_FILE"))  # then all open the file at once
    with durable.Engine(db, workers=4, poll_interval=0.01) as engine:
        handles = [engine.start(effects.chain, steps, workflow_id=f"p{index}-{k}")
                   for k in range(count)]
        print(json.dumps([h.result(timeout=120) for h in handles]), flush=True)


if __name__ == "__main__":
    main()
