"""A workflow scheduled every second (every tick started, even missed ones).

Only worker processes import this module: a declared schedule fires in every engine with
workers in the process that imports it."""

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
