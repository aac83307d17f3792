"""The DAG examples run as a user would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, db: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), str(db)],
                          capture_output=True, text=True, timeout=120, cwd=db.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_classic_pipeline_runs_and_a_second_run_runs_no_task(tmp_path: Path) -> None:
    db = tmp_path / "pipeline.db"
    first = run_example("dag_pipeline.py", db)
    assert "extract: reading the source" in first and "load: writing 8 rows" in first
    assert "result: loaded 8 rows, max 81" in first
    assert "critical path" in first and "flowchart TD" in first

    second = run_example("dag_pipeline.py", db)
    assert "result: loaded 8 rows, max 81" in second
    assert "extract:" not in second and "load: writing" not in second


def test_the_etl_pipeline_maps_reduces_and_runs_its_shell_task(tmp_path: Path) -> None:
    db = tmp_path / "etl.db"
    out = run_example("etl_pipeline.py", db)
    assert "summary: {'rows': 5, 'bad': 1, 'mean': 12.8}" in out
    assert "check: 5 rows checked" in out
    assert "alert: 1 bad" in out
    assert sorted(line for line in out.splitlines() if line.startswith("  clean:")) == [
        "  clean: Lima", "  clean: Lima", "  clean: Lyon", "  clean: Nuuk", "  clean: Oslo",
        "  clean: Pune",
    ]  # Lima fails, is retried once, then its fallback replaces it
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == 5
