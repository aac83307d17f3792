"""Messages a new user meets: an argument that cannot be recorded is named with its type
and the fix; a workflow defined in a script run as __main__ is warned about at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import durable
from durable.errors import SerializationError
from durable.testing import TestEngine


@durable.workflow(name="msgs.ship")
def ship(order_id: str, lock: object, *, note: str = "") -> str:
    return order_id


def test_an_argument_that_cannot_be_recorded_is_named_with_its_type_and_the_fix() -> None:
    with TestEngine(workers=0) as engine, pytest.raises(SerializationError) as caught:
        engine.start(ship, "A-1", threading.Lock())
    text = str(caught.value)
    assert "argument 'lock' of workflow msgs.ship" in text
    assert "_thread.lock" in text and "builtins.list" not in text
    assert "build the lock inside a step" in text


def test_a_keyword_argument_is_named_too() -> None:
    with TestEngine(workers=0) as engine, pytest.raises(SerializationError) as caught:
        engine.start(ship, "A-1", None, note=threading.Lock())  # type: ignore[arg-type]
    assert "argument 'note'" in str(caught.value)


def test_a_published_value_that_cannot_be_recorded_says_what_to_give() -> None:
    @durable.workflow(name="msgs.publish")
    def publish() -> None:
        durable.set_event("progress", threading.Lock())

    with TestEngine() as engine, pytest.raises(durable.errors.WorkflowFailed) as caught:
        engine.run(publish)
    cause = caught.value.__cause__
    assert isinstance(cause, SerializationError) and "record a reference" in str(cause)


def test_a_workflow_defined_in_main_warns_at_decoration_with_the_name_to_give(
        tmp_path: Path) -> None:
    script = tmp_path / "billing.py"
    script.write_text("import durable\n\n@durable.workflow\ndef invoice(n: int) -> int:\n"
                      "    return n\n\n@durable.workflow(name='billing.named')\n"
                      "def named(n: int) -> int:\n    return n\n")
    ran = subprocess.run([sys.executable, "-W", "always", str(script)], capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count("MainModuleName") == 1  # not for the named one
    assert "billing.py:3" in ran.stderr  # points at the user's decorator line
    assert "@durable.workflow(name=\"billing.invoice\")" in ran.stderr
    imported = subprocess.run([sys.executable, "-W", "error", "-c", "import billing"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr  # imported as a module: no warning
