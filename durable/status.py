"""Workflow and task states."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The state of a workflow (``SKIPPED`` is for DAG tasks)."""

    ENQUEUED = "ENQUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    WAITING = "WAITING"
    PAUSED = "PAUSED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"
    #: Set aside: its code no longer replays its history (``durable check``, then
    #: ``resume`` after a fix; ``cancel`` or ``terminate`` end it without replaying).
    DIVERGED = "DIVERGED"
    SKIPPED = "SKIPPED"

    @property
    def finished(self) -> bool:
        """True for the states a workflow never leaves."""
        return self in (Status.SUCCESS, Status.FAILURE, Status.CANCELLED, Status.SKIPPED)
