"""A scheduled workflow: a nightly report, and what happens to the nights a worker missed.

    python examples/nightly_report.py [DB]

``@durable.scheduled`` stores the schedule in the database, and every worker that imports
this module fires it: each tick is one workflow with id ``name@ISO-time``, so it runs
once however many workers there are. To see it without waiting for 02:00, this example
also schedules a report every second at run time (``engine.schedule``), lets it tick,
then stops the worker for a while and shows that only the latest missed tick is caught
up (``missed="latest"``, the default).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import durable


@durable.step
def build_report(day: str) -> dict[str, object]:
    return {"day": day, "orders": 42}


@durable.scheduled("0 2 * * *", timezone="Europe/Berlin")
@durable.workflow
def nightly_report(scheduled_at: datetime) -> dict[str, object]:
    """Runs at 02:00 Berlin time every night."""
    return build_report(scheduled_at.date().isoformat())


@durable.workflow
def heartbeat_report(scheduled_at: datetime, team: str) -> str:
    return f"{team} report for {scheduled_at.isoformat(timespec='seconds')}"


def ticks(engine: durable.Engine) -> list[str]:
    return sorted(w.workflow_id for w in engine.list_workflows(name=heartbeat_report.name))


def main(db: str) -> None:
    with durable.Engine(db) as engine:
        engine.schedule("heartbeat", "* * * * * *", heartbeat_report, "ops")  # every second
        for schedule in engine.schedules():
            due = datetime.fromtimestamp(schedule.next_at).astimezone()
            print(f"schedule {schedule.name}: {schedule.cron!r} ({schedule.timezone}), "
                  f"next due {due.isoformat(timespec='seconds')}")
        while len(ticks(engine)) < 2:
            time.sleep(0.05)
    print(f"ran while the worker was up: {len(ticks_of(db))} ticks")
    down = time.time()
    time.sleep(3.5)  # no worker runs: three ticks fall
    with durable.Engine(db) as engine:
        while not [t for t in ticks(engine) if _at(t) > down + 3]:
            time.sleep(0.05)
        first = next(t for t in ticks(engine) if _at(t) > down)  # the catch-up tick
        skipped = len(range(int(down) + 1, int(_at(first))))
        print(f"after 3.5 s of downtime: caught up with 1 tick ({first}); the {skipped} "
              "earlier missed ticks were not run")
        print("result:", engine.handle(first).result(timeout=10))
        engine.unschedule("heartbeat")
    print("schedules left:", [s.name for s in _schedules(db)])


def _at(workflow_id: str) -> float:
    return datetime.fromisoformat(workflow_id.split("@", 1)[1]).timestamp()


def ticks_of(db: str) -> list[str]:
    with durable.Engine(db, workers=0) as engine:
        return ticks(engine)


def _schedules(db: str) -> list[durable.store.ScheduleRow]:
    with durable.Engine(db, workers=0) as engine:
        return engine.schedules()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(str(Path(folder) / "reports.db"))
