"""A workflow the tests schedule at run time (engine.schedule); it declares no schedule."""

from __future__ import annotations

import os
from datetime import datetime

from apps.effects import effect

import durable


@durable.step
def runtime_tick_effect(scheduled_at: datetime, label: str) -> str:
    effect(f"{label} {scheduled_at.isoformat()} {os.getpid()}")
    return label


@durable.workflow(name="ticked.runtime")
def runtime_tick(scheduled_at: datetime, label: str) -> str:
    return runtime_tick_effect(scheduled_at, label)
