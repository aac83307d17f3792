"""A workflow scheduled every second (every tick started, even missed ones)."""

from __future__ import annotations

import os
from datetime import datetime

from apps.effects import effect

import durable


@durable.scheduled("* * * * * *", missed="all")
@durable.workflow(name="ticking.every_second")
def every_second(scheduled_at: datetime) -> str:
    return _tick(scheduled_at)


@durable.step
def _tick(scheduled_at: datetime) -> str:
    effect(f"tick {scheduled_at.isoformat()} {os.getpid()}")
    return scheduled_at.isoformat()


@durable.step
def _runtime_tick(scheduled_at: datetime, label: str) -> str:
    effect(f"{label} {scheduled_at.isoformat()} {os.getpid()}")
    return label


@durable.workflow(name="ticking.runtime")
def runtime_tick(scheduled_at: datetime, label: str) -> str:
    """Scheduled at run time by the tests (engine.schedule)."""
    return _runtime_tick(scheduled_at, label)
