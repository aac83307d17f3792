"""An ETL pipeline as a DAG: a file written atomically, a shell command, map-reduce over
rows, a conditional alert and a fallback.

    python examples/etl_pipeline.py [DB]

    generate -> write_csv -> count_lines (shell: wc -l) ----------.
                          \\-> parse -> clean (one step per row) -> summarize -> save
                                                                 \\-> alert (only if bad rows)

Every row of the map is its own recorded step: a crash in the middle of the map does not
clean the finished rows again when the run resumes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import durable
from durable.dag import Fallback, Task, Workflow, map_task, reduce_task, tasks


def generate() -> str:
    lines = ["city,temperature"] + [f"{city},{temp}" for city, temp in (
        ("Lyon", "21.5"), ("Oslo", "4.0"), ("Lima", "n/a"), ("Pune", "33.2"), ("Nuuk", "-7.5"),
    )]
    return "\n".join(lines) + "\n"


def parse(path: str) -> list[dict[str, str]]:
    with open(path) as file:
        header, *rows = file.read().splitlines()
    keys = header.split(",")
    return [dict(zip(keys, row.split(","), strict=True)) for row in rows]


def clean(row: dict[str, str]) -> dict[str, Any]:
    print(f"  clean: {row['city']}\n", end="")  # one write: rows are cleaned in parallel
    return {"city": row["city"], "celsius": float(row["temperature"])}  # "n/a" raises


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in rows if r["celsius"] is not None]
    return {"rows": len(rows), "bad": len(rows) - len(good),
            "mean": round(sum(r["celsius"] for r in good) / len(good), 2)}


def check(summarize: dict[str, Any], count_lines: dict[str, Any]) -> str:
    lines = int(count_lines["stdout"].split()[0]) - 1  # without the header
    assert lines == summarize["rows"], (lines, summarize)
    return f"{lines} rows checked"


def main(db: str) -> None:
    folder = os.path.dirname(os.path.abspath(db))
    csv_path = os.path.join(folder, "weather.csv")
    with durable.Engine(db) as engine:
        workflow = Workflow(name="weather-etl", engine=engine, max_workers=4)
        workflow.add_task(Task(name="generate", func=generate))
        workflow.add_task(tasks.write_file("write_csv", csv_path,
                                           lambda upstream: upstream["generate"],
                                           dependencies=["generate"]))
        workflow.add_task(tasks.shell("count_lines", ["wc", "-l", csv_path], timeout=10,
                                      dependencies=["write_csv"]))
        workflow.add_task(reduce_task("parse", parse, over="write_csv"))
        workflow.add_task(map_task(
            "clean", clean, over="parse", max_retries=1, retry_delay=0.1,
            fallback=Fallback.function(lambda row: {"city": row["city"], "celsius": None}),
        ))
        workflow.add_task(reduce_task("summarize", summarize, over="clean"))
        workflow.add_task(Task(name="check", func=check,
                               dependencies=["summarize", "count_lines"]))
        workflow.add_task(Task(name="alert", func=lambda summarize: f"{summarize['bad']} bad",
                               dependencies=["summarize"],
                               run_if=lambda upstream: upstream["summarize"]["bad"] > 0))
        workflow.add_task(tasks.write_file(
            "save", os.path.join(folder, "summary.json"),
            lambda upstream: upstream["summarize"], dependencies=["check", "summarize"]))

        results = workflow.run(run_id="weather-1")
        print(f"summary: {results['summarize']}")
        print(f"check: {results['check']}")
        print(f"alert: {results.get('alert', 'none')}")
        print(workflow.report())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(tempfile.mkdtemp(prefix="durable-"), "etl_pipeline.db"))
