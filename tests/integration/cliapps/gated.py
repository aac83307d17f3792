"""A workflow whose first step runs until the test opens a gate (a file), to shut a
worker down while the step is in flight. Each step notes its runs in ``folder``."""

from __future__ import annotations

import time
from pathlib import Path

import durable


def _note(folder: str, name: str) -> None:
    with open(Path(folder) / f"{name}.runs", "a") as file:
        file.write("ran\n")


@durable.step(name="cliapps.gated.slow")
def slow(folder: str) -> str:
    _note(folder, "slow")
    deadline = time.monotonic() + 30
    while not (Path(folder) / "gate").exists():  # the step's "work": wait for the test
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    return "slow done"


@durable.step(name="cliapps.gated.after")
def after(folder: str) -> str:
    _note(folder, "after")
    return "after done"


@durable.workflow(name="cliapps.gated")
def gated(folder: str) -> list[str]:
    return [slow(folder), after(folder)]
