"""What a DAG run did: a status table, the critical path, the slowest tasks, and Mermaid."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from durable.dag.graph import critical_path, problems_and_order
from durable.dag.model import Task, TaskState

if TYPE_CHECKING:  # rich is imported only when a report is rendered
    from rich.console import Console, ConsoleOptions, RenderResult

_STYLES = {
    TaskState.PENDING: "dim",
    TaskState.RUNNING: "cyan",
    TaskState.RETRYING: "yellow",
    TaskState.SUCCESS: "green",
    TaskState.FAILURE: "bold red",
    TaskState.SKIPPED: "magenta",
}


@dataclass(frozen=True)
class TaskRow:
    """One task's line of the report."""

    name: str
    state: TaskState
    attempts: int
    duration: float | None
    started: float | None  # seconds after the run started
    note: str


@dataclass(frozen=True)
class RunReport:
    """The report of a workflow's latest run. ``str()`` renders the table as text.

    Attributes:
        rows: one :class:`TaskRow` per task, in definition order.
        critical_path: the chain of dependent tasks with the longest total duration.
        critical_seconds: that chain's total duration.
        slowest: up to three ``(task, seconds)``, slowest first.
    """

    workflow: str
    run_id: str | None
    rows: list[TaskRow]
    critical_path: list[str]
    critical_seconds: float
    slowest: list[tuple[str, float]] = field(default_factory=list)
    elapsed: float | None = None

    def counts(self) -> dict[str, int]:
        """How many tasks ended in each state."""
        found: dict[str, int] = {}
        for row in self.rows:
            found[row.state.value] = found.get(row.state.value, 0) + 1
        return found

    def table(self) -> Any:
        """The report as a :class:`rich.table.Table`."""
        from rich.table import Table

        summary = ", ".join(f"{n} {s.lower()}" for s, n in self.counts().items())
        title = f"DAG {self.workflow!r} run {self.run_id or '-'}: {summary or 'no tasks'}"
        table = Table(title=title, title_justify="left")
        for header, justify in (("task", "left"), ("state", "left"), ("attempts", "right"),
                                ("duration", "right"), ("started", "right"), ("note", "left")):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(
                row.name, f"[{_STYLES[row.state]}]{row.state.value}[/]",
                str(row.attempts) if row.attempts else "-", _seconds(row.duration),
                f"+{_seconds(row.started)}" if row.started is not None else "-", row.note,
            )
        return table

    def footer(self) -> str:
        lines = []
        if self.critical_path:
            lines.append(f"critical path ({_seconds(self.critical_seconds)}): "
                         + " -> ".join(self.critical_path))
        if self.slowest:
            lines.append("slowest: " + ", ".join(f"{n} ({_seconds(s)})" for n, s in self.slowest))
        if self.elapsed is not None:
            lines.append(f"elapsed: {_seconds(self.elapsed)}")
        return "\n".join(lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table()
        footer = self.footer()
        if footer:
            yield footer

    def __str__(self) -> str:
        from rich.console import Console

        buffer = io.StringIO()
        Console(file=buffer, width=120, color_system=None, force_terminal=False).print(self)
        return buffer.getvalue().rstrip() + "\n"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def _note(task: Task) -> str:
    record = task.run_info
    parts = []
    if record.state is TaskState.FAILURE and record.error is not None:
        parts.append(f"{type(record.error).__name__}: {record.error}".splitlines()[0][:80])
    if record.state is TaskState.SKIPPED and record.skip_reason:
        parts.append(record.skip_reason)
    if record.note:
        parts.append(record.note)
    if record.items is not None:
        parts.append(f"{record.items} items")
    if record.state is TaskState.SUCCESS and record.started is None and record.note is None:
        parts.append("not run here: result from the log")
    return "; ".join(parts)


def build_report(workflow: str, run_id: str | None, tasks: Mapping[str, Task],
                 started_at: float | None, finished_at: float | None) -> RunReport:
    """The report of the latest run of DAG ``workflow`` (its ``tasks`` hold the run's
    records; ``started_at``/``finished_at`` are the run's wall-clock bounds)."""
    start = started_at
    rows = []
    durations: dict[str, float] = {}
    for name, task in tasks.items():
        record = task.run_info
        duration = record.duration
        if duration is not None:
            durations[name] = duration
        offset = record.started - start if record.started is not None and start else None
        rows.append(TaskRow(name, record.state, record.attempts, duration,
                            None if offset is None else max(0.0, offset), _note(task)))
    _problems, order = problems_and_order(tasks)
    path, total = critical_path(tasks, order, durations)
    if not durations:
        path, total = [], 0.0
    slowest = sorted(durations.items(), key=lambda item: -item[1])[:3]
    elapsed = (finished_at - start if start is not None and finished_at is not None else None)
    return RunReport(workflow, run_id, rows, path, total, slowest, elapsed)


_CLASSES = {
    TaskState.PENDING: "fill:#eeeeee,stroke:#999999",
    TaskState.RUNNING: "fill:#d0e8ff,stroke:#1f6feb",
    TaskState.RETRYING: "fill:#fff3cd,stroke:#d4a017",
    TaskState.SUCCESS: "fill:#d4edda,stroke:#28a745",
    TaskState.FAILURE: "fill:#f8d7da,stroke:#dc3545",
    TaskState.SKIPPED: "fill:#f3e5f5,stroke:#8e44ad",
}


def mermaid(tasks: Mapping[str, Task]) -> str:
    """The DAG of ``tasks`` as a Mermaid flowchart (edges point to the dependent task)."""
    ids = {name: f"t{i}" for i, name in enumerate(tasks)}
    lines = ["flowchart TD"]
    used: set[TaskState] = set()
    for name, task in tasks.items():
        label = name.replace('"', "#quot;")
        state = task.state
        used.add(state)
        lines.append(f'    {ids[name]}["{label}"]:::{state.value.lower()}')
    for name, task in tasks.items():
        for dep in task.dependencies:
            if dep in ids:
                lines.append(f"    {ids[dep]} --> {ids[name]}")
    for state in TaskState:
        if state in used:
            lines.append(f"    classDef {state.value.lower()} {_CLASSES[state]}")
    return "\n".join(lines) + "\n"
