"""Firing cron schedules from an engine's dispatcher.

Schedules live in the database (``engine.schedule`` and ``@durable.scheduled``), so
every worker sees them. The dispatcher asks :meth:`Scheduler.poll` on each pass; it
reads the (small) schedules table once a second when nothing is due. A due tick is started by
:meth:`durable.store.Store.fire_schedule`, which moves the schedule's ``next_at`` only
if no other process moved it first; the tick's workflow id ``name@ISO-time`` makes its
start idempotent besides, so each tick runs once across any number of processes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.runtime.registry import find_workflow
from durable.runtime.rows import new_row, started_event
from durable.runtime.schedules import SCHEDULES, due_ticks, next_tick, tick_id, tick_time
from durable.store import NewEvent, ScheduleRow, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine

log = logging.getLogger("durable")

#: Seconds between two reads of the schedules (to see one added elsewhere).
LOOK_EVERY = 1.0
#: Seconds before a schedule whose tick failed to start is tried again.
RETRY_FAILED = 60.0


def schedule_row(name: str, cron: str, timezone: str, missed: str, workflow: str,
                 args: tuple[Any, ...], now: float, declared: bool) -> ScheduleRow:
    """A schedule as stored; its first tick is the first after ``now``."""
    encoding, payload = ser.encode([list(args), {}])
    return ScheduleRow(name, cron, timezone, missed, workflow, encoding, payload,
                       next_tick(cron, timezone, now), declared, now, now)


class Scheduler:
    """The schedules side of one engine's dispatcher."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._look_at = 0.0
        self._due: float | None = None
        self._failed: dict[str, float] = {}  # schedule name -> when to try it again

    def declare(self) -> None:
        """Store the schedules declared with ``@durable.scheduled`` in this process."""
        now = self.engine.time()
        for name, declared in SCHEDULES.items():
            self.engine.store.put_schedule(schedule_row(
                name, declared.cron, declared.timezone, declared.missed,
                declared.workflow.name, (), now, declared=True))
        self.changed()

    def changed(self) -> None:
        """A schedule was added or removed here: look again at the next poll."""
        self._look_at = 0.0

    def poll(self, now: float) -> bool:
        """Start the ticks due at ``now``; True if any workflow was started."""
        store = self.engine.store
        if now >= self._look_at:
            self._look_at = now + LOOK_EVERY
            self._due = self._earliest(store.schedules(), now)
        if self._due is None or self._due > now:
            return False
        started = False
        for schedule in store.schedules():
            if schedule.next_at > now or not self._mine(schedule, now):
                continue
            try:
                started = self._fire(schedule, now) or started
            except Exception:  # one broken schedule must not stop the others, nor claims
                log.exception("schedule %r: starting its tick failed; trying again in %.0f s",
                              schedule.name, RETRY_FAILED)
                self._failed[schedule.name] = now + RETRY_FAILED
        self._due = self._earliest(store.schedules(), now)
        return started

    def _mine(self, schedule: ScheduleRow, now: float) -> bool:
        """This engine can start its ticks: it imports the workflow, and the schedule did
        not fail here lately. (A schedule of a workflow it does not import is left to
        the workers that do.)"""
        return (find_workflow(schedule.workflow) is not None
                and self._failed.get(schedule.name, 0.0) <= now)

    def _earliest(self, schedules: list[ScheduleRow], now: float) -> float | None:
        due = [s.next_at for s in schedules if self._mine(s, now)]
        return min(due) if due else None

    def _fire(self, schedule: ScheduleRow, now: float) -> bool:
        workflow = find_workflow(schedule.workflow)
        assert workflow is not None  # see _mine
        ticks, next_at = due_ticks(schedule.cron, schedule.timezone, schedule.missed,
                                   schedule.next_at, now)
        args, kwargs = ser.decode(schedule.input_encoding, schedule.input)
        items: list[tuple[WorkflowRow, list[NewEvent]]] = []
        for tick in ticks:
            call_args = (tick_time(tick, schedule.timezone), *args)
            row = new_row(workflow, tick_id(schedule.name, tick), call_args, kwargs, now)
            items.append((row, [started_event(workflow, row, call_args, kwargs)]))
        fired = self.engine.store.fire_schedule(schedule.name, schedule.next_at, next_at, items,
                                                now)
        if fired and items:
            log.info("schedule %r: started %s", schedule.name,
                     ", ".join(row.workflow_id for row, _ in items))
        return fired and bool(items)

