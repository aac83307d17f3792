"""Log output of ``durable worker``: text lines, or one JSON object per line.

The ``durable`` logger writes one line at INFO when a workflow starts, suspends (and on
what), resumes, retries a step (attempt, delay, error), diverges, fails and finishes
(duration); step-level lines are at DEBUG. Each carries ``workflow_id``,
``workflow_name``, ``call`` and ``event`` as ``extra`` fields, which
:class:`JsonFormatter` writes out (and a program's own structured handler can read).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: The attributes every LogRecord has: anything else on a record came as ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Send log lines of ``level`` and above to stderr, as ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
