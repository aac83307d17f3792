"""Latency of the dashboard's list and workflow pages on a big database.

Builds (once, then reuses) a database of 100,000 workflows, one of which has a
10,000-event log, by bulk inserts on the schema the store creates; then requests each
page through the ASGI app in-process (Starlette's TestClient: no network, no browser)
and prints p50/p95 per page. The goal is p50 <= 100 ms.

    .venv/bin/python bench/ui_bench.py [--db /tmp/ui_bench.db] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import time

import durable
from durable.store import WORKFLOW_COLUMNS

NAMES = ["shop.checkout", "shop.refund", "mail.digest", "etl.nightly", "billing.invoice"]
STATUSES = ["SUCCESS"] * 80 + ["FAILURE"] * 5 + ["WAITING"] * 8 + ["RUNNING"] * 4 + \
    ["PAUSED"] * 1 + ["CANCELLED"] * 2
BIG = "big-10000-events"
ERROR = json.dumps({"type": "ValueError", "message": "card declined",
                    "traceback": "Traceback (most recent call last):\nValueError: card declined\n",
                    "pickle": None})


def build(path: str, workflows: int = 100_000, big_events: int = 10_000) -> None:
    """A database of ``workflows`` rows (3 events each) plus one ``big_events`` log."""
    durable.Engine(path, workers=0, synchronous="normal").close()  # the schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    now = time.time()
    placeholders = ", ".join("?" * len(WORKFLOW_COLUMNS))
    insert_workflow = (f"INSERT INTO workflows ({', '.join(WORKFLOW_COLUMNS)}) "
                       f"VALUES ({placeholders})")
    insert_event = "INSERT INTO events VALUES (?, ?, 1, ?, ?, ?, '', '', 'json', ?, ?)"
    conn.execute("BEGIN")
    rows, events = [], []
    for i in range(workflows):
        workflow_id = f"wf-{i:06d}-{rng.getrandbits(32):08x}"
        status = rng.choice(STATUSES)
        created = now - 7200 + 7200 * i / workflows
        updated = created + rng.random() * 30
        failed = status == "FAILURE"
        parent = f"wf-{i - 1:06d}" if i % 1000 == 1 else None
        rows.append((
            workflow_id, rng.choice(NAMES), status, 1, "json", '[["A-17"], {}]',
            "error" if failed else ("json" if status == "SUCCESS" else None),
            ERROR if failed else ('"ok"' if status == "SUCCESS" else None), None, None, None,
            None, None, "signal 'approve'" if status == "WAITING" else None, None, 0, 0,
            parent, None, created, updated,
        ))
        events += [
            (workflow_id, 0, 0, "workflow.started", "shop.checkout", '[["A-17"], {}]', created),
            (workflow_id, 1, 1, "step.completed", "shop.charge", '"paid"', created + 0.05),
            (workflow_id, 2, 0, "workflow.completed", "shop.checkout", '"ok"', updated),
        ]
        if len(events) > 30_000:
            conn.executemany(insert_workflow, rows)
            conn.executemany(insert_event, events)
            rows, events = [], []
    conn.executemany(insert_workflow, rows)
    conn.executemany(insert_event, events)
    conn.execute(insert_workflow, (
        BIG, "shop.long", "RUNNING", 1, "json", "[[], {}]", None, None, None, None, None, None,
        None, None, None, 0, 0, None, None, now - 600, now,
    ))
    big = [(BIG, 0, 0, "workflow.started", "shop.long", "[[], {}]", now - 600)]
    for position in range(1, big_events):
        kind = "step.retry" if position % 10 == 0 else "step.completed"
        big.append((BIG, position, (position + 1) // 2, kind, f"shop.step{position % 7}",
                    json.dumps({"n": position}), now - 600 + position * 0.05))
    conn.executemany(insert_event, big)
    conn.execute("COMMIT")
    conn.close()


def measure(path: str, rounds: int) -> dict[str, tuple[float, float]]:
    """p50/p95 in milliseconds of each page, through the ASGI app in this process."""
    from starlette.testclient import TestClient

    from durable.store.reads import WorkflowFilter
    from durable.ui.app import create_app

    engine = durable.Engine(path, workers=0)
    client = TestClient(create_app(engine, "bench"), base_url="http://127.0.0.1:8765")
    client.get("/?token=bench")
    first_page = engine.store.list_workflows(WorkflowFilter(), None, 50)
    assert first_page.next_cursor is not None
    cursor = f"{first_page.next_cursor.created!r}:{first_page.next_cursor.workflow_id}"
    small = engine.store.list_workflows(WorkflowFilter(id_prefix="wf-000001-"), None, 1)
    pages = {
        "list, first page": "/workflows",
        "list, next page (cursor)": f"/workflows?after={cursor}",
        "list, status=FAILURE": "/workflows?status=FAILURE",
        "list, name filter": "/workflows?name=mail.digest",
        "list, id prefix": "/workflows?prefix=wf-05",
        "list, id contains (rare)": "/workflows?q=ffff",
        "workflow, 3 events": f"/w/{small.rows[0].workflow_id}",
        "workflow, 10,000 events": f"/w/{BIG}",
        "workflow live fragment, 10,000 events": f"/w/{BIG}/live",
        "event log page, 10,000 events": f"/w/{BIG}/events?after=5000",
        "overview": "/",
        "bottlenecks (all, 310k events)": "/bottlenecks?window=all",
        "metrics (310k events)": "/metrics",
    }
    results = {}
    for label, url in pages.items():
        client.get(url)  # warm: templates compiled, pages cached
        times = []
        for _ in range(rounds if "events)" not in label else max(3, rounds // 10)):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        times.sort()
        results[label] = (statistics.median(times), times[int(0.95 * (len(times) - 1))])
    engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="/tmp/durable_ui_bench.db")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--rebuild", action="store_true")
    options = parser.parse_args()
    if options.rebuild or not os.path.exists(options.db):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(options.db + suffix):
                os.remove(options.db + suffix)
        started = time.perf_counter()
        build(options.db)
        print(f"built {options.db} in {time.perf_counter() - started:.1f} s")
    print(f"{'page':42} {'p50 ms':>8} {'p95 ms':>8}")
    for label, (p50, p95) in measure(options.db, options.rounds).items():
        flag = "" if p50 <= 100 or not label.startswith(("list", "workflow")) else \
            "  (over the 100 ms goal)"
        print(f"{label:42} {p50:8.1f} {p95:8.1f}{flag}")


if __name__ == "__main__":
    main()
