"""Every ```python block of the README runs as written: a block with test functions under
pytest (with durable's own plugin), any other as a script, each in a folder of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_has_python_samples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_block_runs_as_written(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if re.search(r"^def test_", code, re.M):
        path = tmp_path / f"test_readme_{index}.py"
        path.write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    else:
        path = tmp_path / f"readme_{index}.py"
        path.write_text(code)
        command = [sys.executable, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    if index == 0:
        assert "'status': 'shipped'" in done.stdout
