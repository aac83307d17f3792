"""Parallel calls inside a workflow: ``submit`` and ``gather``.

A submitted call takes its call number when it is submitted, in the workflow's own
thread, so the order in which parallel calls complete never matters on replay.
"""

from __future__ import annotations

from concurrent.futures import Future
from contextvars import copy_context
from typing import Any

from durable.children import ChildHandle, start_child
from durable.context import Cancelled, ReplayEnd, Suspend, require, run_step
from durable.errors import InvalidArgument
from durable.registry import Step, Workflow
from durable.store import Fenced

_CONTROL = (Suspend, Cancelled, Fenced, ReplayEnd)


class DurableFuture:
    """The pending result of a submitted step or child workflow."""

    def __init__(self, future: Future[Any] | None = None, child: ChildHandle | None = None):
        self._future, self._child = future, child

    def result(self) -> Any:
        """Wait for the call and return its result (or raise its error)."""
        if self._child is not None:
            return self._child.result()
        assert self._future is not None
        return self._future.result()

    def done(self) -> bool:
        return self._child is not None or (self._future is not None and self._future.done())


def submit(fn: Step | Workflow, *args: Any, **kwargs: Any) -> DurableFuture:
    """Start a step (in a thread) or a child workflow without waiting for it.

    Example:
        >>> futures = [durable.submit(fetch, url) for url in urls]
        >>> pages = durable.gather(*futures)
    """
    ctx = require("submit")
    if isinstance(fn, Workflow):
        return DurableFuture(child=start_child(fn, *args, **kwargs))
    if not isinstance(fn, Step):
        raise InvalidArgument(
            f"workflow {ctx.workflow_id!r}: durable.submit() takes a @durable.step or "
            f"@durable.workflow function, not {fn!r}"
        )
    site, recorded = ctx.begin("step", fn.name, args, kwargs)
    future: Future[Any] = Future()
    if recorded is not None and recorded[-1].terminal:
        try:
            future.set_result(run_step(ctx, fn, site, recorded, args, kwargs))
        except BaseException as error:
            future.set_exception(error)
        return DurableFuture(future)
    return DurableFuture(ctx.engine._step_pool().submit(
        copy_context().run, run_step, ctx, fn, site, recorded, args, kwargs
    ))


def gather(*futures: DurableFuture) -> list[Any]:
    """Wait for every future; return their results in order.

    If some failed, the first failure (in argument order) is raised once all have
    settled, so no call is left running unrecorded behind the workflow's back.
    """
    outcomes: dict[int, tuple[bool, Any]] = {}
    # Steps first: a child that is not done suspends the workflow, and steps still
    # running then would only be fenced off and run again.
    order = sorted(range(len(futures)), key=lambda i: futures[i]._child is not None)
    for index in order:
        try:
            outcomes[index] = (True, futures[index].result())
        except _CONTROL:
            raise
        except Exception as error:
            outcomes[index] = (False, error)
    for index in range(len(futures)):
        ok, value = outcomes[index]
        if not ok:
            raise value
    return [outcomes[index][1] for index in range(len(futures))]
