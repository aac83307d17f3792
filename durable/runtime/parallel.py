"""Parallel calls inside a workflow: ``submit`` and ``gather``, and the steps that async
workflows await.

A submitted call takes its call number when it is submitted, in the workflow's own
thread, so the order in which parallel calls complete never matters on replay. In async
workflows, the order in which awaiting coroutines resume is kept as well (see
:class:`AsyncDriver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from functools import partial
from typing import Any, Generic, ParamSpec, overload

from typing_extensions import TypeVar

from durable.errors import InvalidArgument, Unwind
from durable.replay import CallSite, Recorded
from durable.runtime.children import ChildHandle, start_child
from durable.runtime.context import RetryLater, WorkflowContext, current_context, require
from durable.runtime.registry import Step, Workflow
from durable.runtime.steps import run_step

#: How often a wait for the first of several futures looks whether its engine shuts down.
STOP_CHECK_INTERVAL = 0.1



P = ParamSpec("P")
T = TypeVar("T")
#: The call's result type (``Any`` when not known).
R = TypeVar("R", default=Any)


class DurableFuture(Generic[R]):
    """The pending result of a submitted step or child workflow (``DurableFuture[R]``)."""

    def __init__(self, ctx: WorkflowContext, future: Future[Any] | None = None,
                 child: ChildHandle[R] | None = None):
        self._ctx, self._future, self._child = ctx, future, child

    def result(self) -> R:
        """Wait for the call and return its result (or raise its error)."""
        if self._child is not None:
            return self._child.result()
        assert self._future is not None
        try:
            value: R = self._future.result()
            return value
        except RetryLater as later:
            raise later.suspend_for(self._ctx) from None

    def done(self) -> bool:
        return self._child is not None or (self._future is not None and self._future.done())

    @staticmethod
    def wait_first(futures: Sequence[DurableFuture], timeout: float | None = None) -> bool:
        """Block until one of ``futures`` is done: True then; False when ``timeout`` passed
        first or the engine running this workflow shuts down (its next recorded call then
        suspends the workflow instead of holding the engine's close).

        Which future is done first depends on timing: call it inside a step, whose
        result is recorded (as ``durable.dag`` does), never in a workflow's own code.
        """
        ctx = current_context.get()
        deadline = None if timeout is None else time.monotonic() + timeout
        inner = [f._future for f in futures if f._future is not None]
        while not any(f.done() for f in futures):
            if ctx is not None and ctx.host.stopping.is_set():
                return False
            left = STOP_CHECK_INTERVAL if deadline is None else min(
                STOP_CHECK_INTERVAL, deadline - time.monotonic())
            if left <= 0:
                return False
            if len(inner) == len(futures):
                wait(inner, timeout=left, return_when=FIRST_COMPLETED)
            else:  # child workflows among them: nothing to wait on, look again soon
                time.sleep(min(left, 0.001))
        return True


@overload
def submit(fn: Step[P, Coroutine[Any, Any, T]], /, *args: P.args,
           **kwargs: P.kwargs) -> DurableFuture[T]: ...
@overload
def submit(fn: Step[P, T] | Workflow[P, T], /, *args: P.args,
           **kwargs: P.kwargs) -> DurableFuture[T]: ...
def submit(fn: Step[..., Any] | Workflow[..., Any], /, *args: Any,
           **kwargs: Any) -> DurableFuture[Any]:
    """Start a step (in a thread) or a child workflow without waiting for it.

    The future's ``result()`` is the step's or workflow's result (an ``async def`` step
    submitted runs to its end in a thread: the future holds what it returns).

    Example:
        >>> futures = [durable.submit(fetch, url) for url in urls]
        >>> pages = durable.gather(*futures)
    """
    ctx = require("submit")
    if isinstance(fn, Workflow):
        return DurableFuture(ctx, child=start_child(fn, *args, **kwargs))
    if not isinstance(fn, Step):
        raise InvalidArgument(
            f"workflow {ctx.workflow_id!r}: durable.submit() takes a @durable.step or "
            f"@durable.workflow function, not {fn!r}"
        )
    site, recorded = ctx.begin("step", fn.name, args, kwargs)
    future: Future[Any] = Future()
    if recorded is not None and recorded[-1].terminal:  # answered from the log at once
        try:
            future.set_result(run_step(ctx, fn, site, recorded, args, kwargs))
        except BaseException as error:
            future.set_exception(error)
        return DurableFuture(ctx, future)
    return DurableFuture(ctx, ctx.beside(run_step, ctx, fn, site, recorded, args, kwargs))


def gather(*futures: DurableFuture[Any]) -> list[Any]:
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
        except Unwind:
            raise
        except BaseException as error:
            outcomes[index] = (False, error)
    for index in range(len(futures)):
        ok, value = outcomes[index]
        if not ok:
            raise value
    return [outcomes[index][1] for index in range(len(futures))]


# -- async workflows ------------------------------------------------------------------

#: Rounds a result waits for the other coroutines to reach their next await; a coroutine
#: that never stops yielding (``while True: await asyncio.sleep(0)``) must not stall it.
_MAX_SPINS = 1000


class AsyncDriver:
    """Hands step results to an async workflow's coroutines one at a time, in log order.

    When several coroutines await steps at once (``asyncio.gather`` of coroutines that
    each call steps), the calls they make next take their numbers in the order in which
    their awaits resume. A thread pool resumes them in whatever order the steps happen to
    finish, and a replay, whose answers are ready at once, in yet another: recorded calls
    would not match their numbers (Temporal #1578, DBOS #688). So results are handed over
    only when every coroutine has run on to its next await (the loop has nothing else
    ready), one at a time: live results in the order their events were appended, recorded
    ones in the order of their positions in the log, which is the same order. A replay
    then resumes the coroutines in the order of the first run, and they make the same
    calls with the same numbers.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()  # a live result's append and its place in line
        # Sets and deque are shared with step threads: each operation on them is atomic.
        self._live: set[int] = set()  # calls running in threads for this driver
        self._line: deque[int] = deque()  # their calls, in the order they were appended
        self._in_line: set[int] = set()
        self._arrived: dict[int, tuple[asyncio.Future[Any], bool, Any]] = {}
        self._recorded: list[tuple[int, int]] = []  # (position, call): a heap
        self._answers: dict[int, tuple[asyncio.Future[Any], Callable[[], Any]]] = {}
        self._scheduled = False
        self._spins = 0

    def await_step(self, ctx: WorkflowContext, step: Step[..., Any], site: CallSite,
                   recorded: list[Recorded] | None, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """A future of the step's result, resolved in log order."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if recorded is not None and recorded[-1].terminal:
            answer = partial(run_step, ctx, step, site, recorded, args, kwargs)
            heapq.heappush(self._recorded, (recorded[-1].position, site.call))
            self._answers[site.call] = (future, answer)
            self._schedule()
            return future
        self._live.add(site.call)
        ctx.beside(self._run_live, ctx, step, site, recorded, args, kwargs, future)
        return future

    def append_outcome(self, ctx: WorkflowContext, site: CallSite, kind: str, encoding: str,
                       payload: Any) -> None:
        """Append the event that answers call ``site`` and take the call's place in line.

        The lock makes the order of the line the order of the events' positions.
        """
        with self._lock:
            ctx.append(ctx.event(site, kind, encoding, payload))
            if site.call in self._live:
                self._line.append(site.call)
                self._in_line.add(site.call)

    def _run_live(self, ctx: WorkflowContext, step: Step[..., Any], site: CallSite,
                  recorded: list[Recorded] | None, args: tuple[Any, ...],
                  kwargs: dict[str, Any], future: asyncio.Future[Any]) -> None:
        try:
            outcome: tuple[bool, Any] = (True, run_step(ctx, step, site, recorded, args, kwargs))
        except BaseException as error:
            outcome = (False, error)
        with contextlib.suppress(RuntimeError):  # a closed loop: the workflow already ended
            self.loop.call_soon_threadsafe(self._arrive, site.call, future, outcome)

    def _arrive(self, call: int, future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
        self._live.discard(call)
        if call not in self._in_line:  # nothing recorded (the run unwinds): no order to keep
            _settle(future, *outcome)
            return
        self._arrived[call] = (future, *outcome)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        ready = getattr(self.loop, "_ready", None)  # asyncio's queue of runnable callbacks
        if ready and self._spins < _MAX_SPINS:
            self._spins += 1  # other coroutines can still run: let them reach their awaits
            self.loop.call_soon(self._pump)
            return
        self._spins = 0
        self._scheduled = False
        if self._hand_over_one():
            self._schedule()

    def _hand_over_one(self) -> bool:
        if self._recorded:
            _, call = heapq.heappop(self._recorded)
            future, answer = self._answers.pop(call)
            try:
                _settle(future, True, answer())
            except BaseException as error:
                _settle(future, False, error)
            return True
        if self._line and self._line[0] in self._arrived:
            call = self._line.popleft()
            self._in_line.discard(call)
            _settle(*self._arrived.pop(call))
            return True
        return False


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the awaiting coroutine was cancelled
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def await_step(ctx: WorkflowContext, step: Step[..., Any], site: CallSite,
                     recorded: list[Recorded] | None, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    """A step called in an async workflow: run in a thread, its result handed over in
    log order (see :class:`AsyncDriver`)."""
    driver = ctx.driver
    if driver is None or driver.loop is not asyncio.get_running_loop():
        driver = ctx.driver = AsyncDriver(asyncio.get_running_loop())
    try:
        return await driver.await_step(ctx, step, site, recorded, args, kwargs)
    except RetryLater as later:
        raise later.suspend_for(ctx) from None
