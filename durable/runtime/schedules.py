"""Cron schedules: ``@durable.scheduled`` declarations and the cron arithmetic.

The cron expressions are parsed by croniter (pallets-eco/croniter): five fields, or six
with seconds last (``"* * * * * */10"``: every ten seconds), evaluated in the schedule's
IANA time zone with croniter's daylight-saving rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from durable.errors import InvalidArgument
from durable.runtime.registry import Workflow

MISSED = ("latest", "all", "skip")
#: At most this many missed ticks are started in one pass with ``missed="all"``; the
#: rest follow in the next passes.
MAX_CATCH_UP = 1000


@dataclass(frozen=True, slots=True)
class Declared:
    """A schedule declared with ``@durable.scheduled`` on a workflow."""

    cron: str
    timezone: str
    missed: str
    workflow: Workflow


SCHEDULES: dict[str, Declared] = {}


def check(cron: str, timezone: str, missed: str, where: str) -> None:
    """Raise InvalidArgument unless the cron, time zone and missed policy are usable."""
    from croniter import croniter  # imported on use: 15 ms at import time

    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise InvalidArgument(
            f"{where}: {cron!r} is not a cron expression; give five fields "
            "'minute hour day month weekday' (or six, seconds last), e.g. '*/5 * * * *'"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidArgument(
            f"{where}: timezone={timezone!r} is not an IANA time zone; e.g. 'UTC' or "
            "'Europe/Berlin'"
        ) from None
    if missed not in MISSED:
        raise InvalidArgument(f"{where}: missed={missed!r} is not one of {', '.join(MISSED)}")


def scheduled(
    cron: str, timezone: str = "UTC", missed: str = "latest"
) -> Callable[[Workflow], Workflow]:
    """Run a workflow at each tick of ``cron``; put it above ``@durable.workflow``.

    The workflow takes ``scheduled_at`` (an aware datetime in ``timezone``). Each tick
    starts one workflow with id ``name@<tick as ISO time in UTC>``, so a tick runs once
    however many workers serve the database. ``missed`` decides the ticks that fell while
    no worker ran: ``"latest"`` starts the most recent one, ``"all"`` starts every one,
    ``"skip"`` starts none.

    Example:
        >>> @durable.scheduled("0 2 * * *", timezone="Europe/Berlin")
        ... @durable.workflow
        ... def nightly_report(scheduled_at: datetime) -> str: ...
    """
    check(cron, timezone, missed, "@durable.scheduled")

    def declare(wf: Workflow) -> Workflow:
        if not isinstance(wf, Workflow):
            raise InvalidArgument(
                f"@durable.scheduled({cron!r}) must decorate a workflow: put it above "
                "@durable.workflow"
            )
        SCHEDULES[wf.name] = Declared(cron, timezone, missed, wf)
        return wf

    return declare


def next_tick(cron: str, timezone: str, after: float) -> float:
    """The first tick of ``cron`` strictly after ``after`` (seconds since the epoch)."""
    from croniter import croniter  # imported on use: 15 ms at import time

    base = datetime.fromtimestamp(after, ZoneInfo(timezone))
    return float(croniter(cron, base).get_next(datetime).timestamp())


def last_tick(cron: str, timezone: str, at: float) -> float:
    """The latest tick of ``cron`` at or before ``at``."""
    from croniter import croniter  # imported on use: 15 ms at import time

    base = datetime.fromtimestamp(at, ZoneInfo(timezone))
    previous = float(croniter(cron, base).get_prev(datetime).timestamp())
    following = next_tick(cron, timezone, previous)
    return following if following <= at else previous


def due_ticks(cron: str, timezone: str, missed: str, next_at: float, now: float
              ) -> tuple[list[float], float]:
    """The ticks to start now and the schedule's next ``next_at``.

    A tick is on time while it is at most ``min(60 s, half the cron's interval)`` old;
    older ticks were missed (no worker ran) and ``missed`` decides them.
    """
    if next_at > now:
        return [], next_at
    if missed == "all":
        ticks: list[float] = []
        tick = next_at
        while tick <= now and len(ticks) < MAX_CATCH_UP:
            ticks.append(tick)
            tick = next_tick(cron, timezone, tick)
        return ticks, tick
    latest = max(last_tick(cron, timezone, now), next_at)
    following = next_tick(cron, timezone, latest)
    grace = min(60.0, (following - latest) / 2)
    if missed == "skip" and now - latest > grace:
        return [], following
    return [latest], following


def tick_id(name: str, tick: float) -> str:
    """The workflow id of one tick: ``name@2026-01-01T02:00:00+00:00``."""
    return f"{name}@{datetime.fromtimestamp(tick, UTC).isoformat()}"


def tick_time(tick: float, timezone: str) -> datetime:
    """A tick as the aware datetime the workflow receives as ``scheduled_at``."""
    return datetime.fromtimestamp(tick, ZoneInfo(timezone))
