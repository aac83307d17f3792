"""The run report and the Mermaid graph, from task states set by hand (no engine)."""

from __future__ import annotations

from durable.dag import Task, TaskState, Workflow


def noop() -> None:
    return None


def finished_workflow() -> Workflow:
    workflow = Workflow("report")
    for name, deps in (("extract", []), ("clean", ["extract"]), ("audit", ["extract"]),
                       ("load", ["clean", "audit"]), ("notify", ["load"])):
        workflow.add_task(Task(name=name, func=noop, dependencies=deps))
    workflow.run_id = "report-1"
    workflow.started_at, workflow.finished_at = 1000.0, 1010.0
    timings = {"extract": (1000.0, 1001.0, 1), "clean": (1001.0, 1007.0, 3),
               "audit": (1001.0, 1002.0, 1), "load": (1007.0, 1008.0, 1)}
    for name, (start, end, attempts) in timings.items():
        record = workflow[name].run_info
        record.started, record.finished, record.attempts = start, end, attempts
        record.state = TaskState.SUCCESS
    workflow["load"].run_info.state = TaskState.FAILURE
    workflow["load"].run_info.error = ValueError("disk full")
    notify = workflow["notify"].run_info
    notify.state, notify.skip_reason = TaskState.SKIPPED, "upstream task 'load' failed"
    return workflow


def test_the_report_has_a_row_per_task_with_state_attempts_and_duration() -> None:
    report = finished_workflow().report()
    rows = {row.name: row for row in report.rows}
    assert rows["clean"].attempts == 3
    assert rows["clean"].duration == 6.0
    assert rows["clean"].started == 1.0
    assert rows["load"].note == "ValueError: disk full"
    assert rows["notify"].note == "upstream task 'load' failed"
    assert report.counts() == {"SUCCESS": 3, "FAILURE": 1, "SKIPPED": 1}


def test_the_report_names_the_critical_path_and_the_slowest_tasks() -> None:
    report = finished_workflow().report()
    assert report.critical_path == ["extract", "clean", "load"]
    assert report.critical_seconds == 8.0
    assert report.slowest[0] == ("clean", 6.0)


def test_the_report_renders_as_a_readable_table() -> None:
    text = str(finished_workflow().report())
    assert "DAG 'report' run report-1" in text
    for expected in ("extract", "SUCCESS", "FAILURE", "SKIPPED", "6.00 s",
                     "critical path (8.00 s): extract -> clean -> load", "slowest: clean"):
        assert expected in text


def test_mermaid_draws_every_task_and_edge_coloured_by_state() -> None:
    text = finished_workflow().to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    t0["extract"]:::success' in lines
    assert '    t3["load"]:::failure' in lines
    assert "    t0 --> t1" in lines and "    t3 --> t4" in lines
    assert any(line.startswith("    classDef skipped") for line in lines)


def test_mermaid_escapes_quotes_in_names() -> None:
    workflow = Workflow("quotes")
    workflow.add_task(Task(name='say "hi"', func=noop))
    assert 't0["say #quot;hi#quot;"]:::pending' in workflow.to_mermaid()
