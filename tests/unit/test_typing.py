"""The typed API: mypy (and pyright, where it runs) check a user's calls of steps and
workflows, and know what ``engine.start(...).result()`` returns."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).parent.parent / "typing" / "typed_program.py"


def _error_lines() -> set[int]:
    lines = PROGRAM.read_text().splitlines()
    return {number for number, line in enumerate(lines, 1) if "  # error:" in line}


def test_mypy_reports_wrong_arguments_and_only_those(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), str(PROGRAM)],
        capture_output=True, text=True, timeout=300,
    )
    reported = {int(m.group(1)) for m in
                re.finditer(r"typed_program\.py:(\d+): error", done.stdout)}
    assert reported == _error_lines(), done.stdout


def test_pyright_reports_wrong_arguments_and_only_those() -> None:
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("pyright is not installed (pip install pyright; it needs node)")
    done = subprocess.run([pyright, str(PROGRAM)], capture_output=True, text=True, timeout=300)
    if "error" not in done.stdout and done.returncode != 0:
        pytest.skip(f"pyright could not run here: {done.stdout[-300:]} {done.stderr[-300:]}")
    reported = {int(m.group(1)) for m in
                re.finditer(r"typed_program\.py:(\d+):\d+ - error", done.stdout)}
    assert reported == _error_lines(), done.stdout
