"""Replaying an exported history against today's code, in a unit test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from durable.engine import history
from durable.runtime.registry import Workflow
from durable.testing.engine import TestEngine


def read(source: str | os.PathLike[str]) -> dict[str, Any]:
    """A history from JSON text or from the path of a file that holds it."""
    text = os.fspath(source)
    if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
        text = Path(text).read_text(encoding="utf-8")
    return history.parse(text)


def replay(source: str | os.PathLike[str], workflow: Workflow[..., Any] | None = None) -> Any:
    """Replay an exported history (JSON text or a file path) against ``workflow``'s code
    as it is now, running no step; return the result the replay reaches.

    The history goes into a temporary database that is removed afterwards.

    Raises:
        NonDeterminismError: where today's code no longer makes the recorded calls.
        WorkflowFailed: the run failed, and today's code fails the same way.

    Example:
        >>> durable.testing.replay(Path("tests/histories/order-A-17.json"), checkout)
    """
    data = read(source)
    with TestEngine(workers=0) as engine:
        row = history.load(engine, data)
        return engine.replay(row.workflow_id, workflow)
