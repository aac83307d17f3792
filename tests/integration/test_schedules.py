"""Cron schedules: once per tick across worker processes, catching up after downtime,
daylight-saving transitions, and the stored schedules every worker sees."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import durable
from durable.runtime.schedules import due_ticks, next_tick, tick_id
from tests.conftest import wait_until
from tests.integration._queue_procs import Workers, effects

sys.path.insert(0, str(Path(__file__).parent))
from apps import ticked  # named as the workers name it: apps.ticked


@pytest.fixture
def workers(db: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(db, tmp_path / "effects", tmp_path, "apps.ticking", "apps.ticked")
    yield pool
    pool.close()


def seconds(lines: list[list[str]], label: str) -> list[int]:
    return [int(datetime.fromisoformat(w[1]).timestamp()) for w in lines if w[0] == label]


def test_a_schedule_fires_once_per_tick_with_two_worker_processes(workers: Workers) -> None:
    first, second = workers.spawn(), workers.spawn()
    wait_until(lambda: len(seconds(effects(workers.effects), "tick")) >= 4, timeout=30,
               what="four ticks")
    workers.stop(first)
    workers.stop(second)
    lines = effects(workers.effects)
    ticks = seconds(lines, "tick")
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    assert sorted(ticks) == list(range(min(ticks), max(ticks) + 1)), "a tick was lost"
    with durable.Engine(workers.db, workers=0) as client:
        ids = {w.workflow_id for w in client.list_workflows(name="ticking.every_second")}
    assert {tick_id("ticking.every_second", t) for t in ticks} <= ids


@pytest.mark.parametrize("missed", [
    "latest",
    pytest.param("all", marks=pytest.mark.slow),  # 5 s each: the fast suite keeps one
    pytest.param("skip", marks=pytest.mark.slow),
])
def test_missed_ticks_after_downtime_follow_the_schedule_policy(
    workers: Workers, missed: str
) -> None:
    with durable.Engine(workers.db, workers=0) as client:
        client.schedule(missed, "* * * * * *", ticked.runtime_tick, missed, missed=missed)
        assert [s.name for s in client.schedules()] == [missed]
    proc = workers.spawn()
    wait_until(lambda: seconds(effects(workers.effects), missed), timeout=30, what="a tick")
    workers.stop(proc)
    stopped = time.time()
    time.sleep(3.2)  # the downtime: three or four ticks fall while no worker runs
    proc = workers.spawn()
    ready = time.time()
    wait_until(lambda: any(t > ready for t in seconds(effects(workers.effects), missed)),
               timeout=30, what="a tick after the restart")
    workers.stop(proc)
    ticks = sorted(seconds(effects(workers.effects), missed))
    assert len(ticks) == len(set(ticks))
    fell = range(int(stopped) + 1, int(ready) + 1)  # the ticks due while none ran
    during = [t for t in ticks if t in fell]
    if missed == "all":
        assert during == list(fell)  # every missed tick ran after the restart
    elif missed == "latest":  # one catch-up tick: the latest due when the worker polled
        after = [t for t in ticks if t > stopped]
        assert after[0] in (int(ready), int(ready) + 1)
        assert after == list(range(after[0], after[0] + len(after)))
    else:  # none of those that were late when the worker came back
        assert [t for t in during if t < ready - 0.5] == []


def test_daylight_saving_transitions_follow_croniter() -> None:
    berlin = "Europe/Berlin"
    # Spring forward (2026-03-29): 02:30 does not exist; croniter fires at 03:00 CEST.
    spring = next_tick("30 2 * * *", berlin, datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp())
    assert datetime.fromtimestamp(spring, UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # Fall back (2026-10-25): 02:30 happens twice; croniter fires at both (CEST, then CET),
    # and their ids differ because they are written in UTC.
    first = next_tick("30 2 * * *", berlin, datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp())
    again = next_tick("30 2 * * *", berlin, first)
    assert again - first == 3600
    assert tick_id("n", first) == "n@2026-10-25T00:30:00+00:00"
    assert tick_id("n", again) == "n@2026-10-25T01:30:00+00:00"


def test_due_ticks_decide_missed_ticks() -> None:
    cron, start = "* * * * *", datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    now = start + 300.5  # five minutes and a half late: ticks at +0 .. +300
    ticks, next_at = due_ticks(cron, "UTC", "all", start, now)
    assert ticks == [start + 60 * i for i in range(6)] and next_at == start + 360
    assert due_ticks(cron, "UTC", "latest", start, now) == ([start + 300], start + 360)
    assert due_ticks(cron, "UTC", "skip", start, now) == ([start + 300], start + 360)
    assert due_ticks(cron, "UTC", "skip", start, now + 40) == ([], start + 360)  # 40 s late
    assert due_ticks(cron, "UTC", "all", start, start - 1) == ([], start)


def test_schedules_are_stored_replaced_and_removed(engine: durable.Engine) -> None:
    engine.schedule("hourly", "0 * * * *", ticked.runtime_tick, "x")
    first = engine.schedules()
    assert [(s.name, s.cron, s.declared) for s in first] == [("hourly", "0 * * * *", False)]
    engine.schedule("hourly", "0 * * * *", ticked.runtime_tick, "y")  # same cron: same tick
    assert engine.schedules()[0].next_at == first[0].next_at
    assert engine.unschedule("hourly") and not engine.unschedule("hourly")
    assert engine.schedules() == []


def test_bad_schedules_are_refused_with_the_fix(engine: durable.Engine) -> None:
    with pytest.raises(durable.errors.InvalidArgument, match="not a cron expression"):
        durable.scheduled("every day")
    with pytest.raises(durable.errors.InvalidArgument, match="IANA"):
        engine.schedule("x", "* * * * *", ticked.runtime_tick, timezone="Mars/Base")
    with pytest.raises(durable.errors.InvalidArgument, match="missed"):
        durable.scheduled("* * * * *", missed="some")
    with pytest.raises(durable.errors.InvalidArgument, match="above @durable.workflow"):
        durable.scheduled("* * * * *")(print)  # type: ignore[arg-type]


def test_a_broken_or_foreign_schedule_stops_neither_other_schedules_nor_workflows(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects"))
    from durable.engine.scheduler import schedule_row

    with durable.Engine(db, workers=2, synchronous="normal", poll_interval=0.01) as engine:
        real = engine.store.fire_schedule

        def fire(name: str, *args: object) -> bool:
            if name == "broken":
                raise RuntimeError("a broken schedule")
            return real(name, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(engine.store, "fire_schedule", fire)
        foreign = schedule_row("foreign", "* * * * * *", "UTC", "latest", "not.imported.here",
                               (), time.time() - 5, declared=False)
        engine.store.put_schedule(foreign)
        engine.schedule("broken", "* * * * * *", ticked.runtime_tick, "broken")
        engine.schedule("fine", "* * * * * *", ticked.runtime_tick, "fine")
        wait_until(lambda: seconds(effects(tmp_path / "effects"), "fine"), timeout=10,
                   what="a tick of the working schedule")
        assert engine.run(ticked.runtime_tick, datetime.now(UTC), "plain") == "plain"
        left = {s.name: s.next_at for s in engine.schedules()}
    assert left["foreign"] == foreign.next_at  # left to a worker that imports it
    assert seconds(effects(tmp_path / "effects"), "broken") == []
