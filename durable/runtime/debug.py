"""Replaying a workflow into ``pdb``: the replay stops right after call N has returned
its recorded value, in the workflow code that made it, with its locals. Nothing runs for
real (it is a replay: every recorded call returns its recorded value)."""

from __future__ import annotations

import pdb
import sys
from typing import Any, TextIO

from durable.errors import InvalidArgument
from durable.replay import CallSite, Recorded
from durable.runtime.context import WorkflowContext

_PACKAGE = __file__.rsplit("/", 2)[0]


def _user_frame() -> Any:
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    return frame


class BreakingContext(WorkflowContext):
    """A replay context that opens ``pdb`` once call ``break_at`` is answered."""

    break_at: int = 0
    stdin: TextIO | None = None
    stdout: TextIO | None = None

    def begin(self, family: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> tuple[CallSite, list[Recorded] | None]:
        site, recorded = super().begin(family, name, args, kwargs)
        if site.call == self.break_at:
            frame = _user_frame()
            debugger = pdb.Pdb(stdin=self.stdin, stdout=self.stdout,
                               skip=["durable", "durable.*", "asyncio", "asyncio.*"])
            debugger.message(
                f"durable: workflow {self.workflow_id!r} replayed to call #{site.call} "
                f"({site.describe()}); pdb stops in the workflow once it has its recorded "
                "value (`p locals()`, `n`, `c`)"
            )
            debugger.set_trace(frame)
        return site, recorded


def breaking(break_at: int, calls: int) -> type[BreakingContext]:
    """A context class that breaks at call ``break_at`` of a history of ``calls`` calls."""
    if break_at < 1 or break_at > calls:
        raise InvalidArgument(
            f"--break-at {break_at}: the history holds calls 1 to {calls}; choose one of "
            "those (`durable history ID` lists them)"
        )
    return type("BreakAt", (BreakingContext,), {"break_at": break_at})
