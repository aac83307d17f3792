"""A worker process for concurrency tests:
``worker_proc.py DB [--workers N] [--lease S] MODULE...``.

Imports the modules (under ``tests/integration``; their workflows register), opens
``durable.Engine(DB, workers=N, lease=S)``, prints ``ready`` once the engine is open and
runs until SIGTERM or SIGINT, then closes the engine (which releases what it holds).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import durable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.01)
    args = parser.parse_args()
    for module in args.modules:
        importlib.import_module(module)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    with durable.Engine(args.db, workers=args.workers, lease=args.lease,
                        poll_interval=args.poll):
        print("ready", flush=True)
        # Timed: the kernel may deliver SIGTERM to another thread, and the handler runs
        # only when the main thread runs bytecode; an untimed wait could sleep through it.
        while not stop.wait(0.1):
            pass
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
