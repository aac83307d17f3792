"""The bottlenecks of a database as a terminal table (for ``durable show --bottlenecks``).

Uses only rich (a core dependency), not the ``ui`` extra.
"""

from __future__ import annotations

from rich.table import Table

from durable.store.reads import StepStats
from durable.ui.views import format_duration


def bottleneck_table(stats: list[StepStats], limit: int = 20) -> Table:
    """The slowest steps by p95, with p50, max, attempts, retries and failures."""
    table = Table(title="slowest steps (attempt durations, by p95)")
    for column in ("step", "attempts", "p50", "p95", "max", "total", "retries", "failures"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for entry in stats[:limit]:
        table.add_row(entry.name, str(entry.attempts), format_duration(entry.p50),
                      format_duration(entry.p95), format_duration(entry.max),
                      format_duration(entry.total_seconds), str(entry.retries),
                      str(entry.failures))
    return table


def most_retried(stats: list[StepStats], limit: int = 10) -> Table:
    """The steps with the most retried attempts."""
    table = Table(title="most retried steps")
    for column in ("step", "retries", "attempts", "failures"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for entry in sorted((s for s in stats if s.retries), key=lambda s: (-s.retries, s.name))[
            :limit]:
        table.add_row(entry.name, str(entry.retries), str(entry.attempts), str(entry.failures))
    return table
