"""The replay context: what a workflow's calls do while it runs or replays.

A context variable holds the running workflow's :class:`WorkflowContext`. Each
recorded call takes the next call number; if the log holds that call, its recorded
value (or exception) is returned; otherwise the call runs and its result is appended
to the log in one fenced transaction. A call that cannot finish now (a timer, a
signal, a retry backoff) records what it waits for and unwinds the workflow with
:class:`Suspend`, holding no thread; the engine runs it again by replay later.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.errors import (
    RETURN_FIX,
    NonDeterminismError,
    NotInWorkflow,
    SerializationError,
    Unwind,
)
from durable.replay import FAMILY, CallSite, History, Recorded, describe_change, new_site
from durable.store import NewEvent

if TYPE_CHECKING:
    from durable.runtime.host import Host
    from durable.runtime.parallel import AsyncDriver
    from durable.runtime.registry import Step
    from durable.store import WorkflowRow

log = logging.getLogger("durable")

INFO, DEBUG = logging.INFO, logging.DEBUG


def log_fields(row: WorkflowRow, call: int, event: str, **more: Any) -> dict[str, Any]:
    """The ``extra`` of a log line about a workflow: its id, name and call number, what
    happened (``event``), and more fields, for structured handlers (``--log-format json``)."""
    return {"workflow_id": row.workflow_id, "workflow_name": row.name, "call": call,
            "event": event, **more}


current_context: ContextVar[WorkflowContext | None] = ContextVar("durable_workflow", default=None)
current_step_key: ContextVar[str | None] = ContextVar("durable_step", default=None)
#: The workflow id of the running step (its key alone is ambiguous from run 2 on).
current_step_workflow: ContextVar[str | None] = ContextVar("durable_step_workflow",
                                                           default=None)



class Suspend(Unwind):
    """Unwinds a workflow that waits; its row already says for what and until when."""


class Cancelled(Unwind):
    """Unwinds a workflow that is being cancelled (compensations run next)."""


class TimedOut(Unwind):
    """Unwinds a workflow whose deadline passed (it fails with ``WorkflowTimeout``)."""


#: Recorded (call 0) before the compensations of a failed or cancelled run:
#: ``{"at": call, "reason": "cancel" | "timeout" | "failure"}``.
COMPENSATING = "workflow.compensating"


class RetryLater(Unwind):
    """A step running beside its workflow (submitted, or awaited in an async workflow)
    whose next attempt is too far off to wait for: its ``step.retry`` is recorded; the
    workflow suspends when it waits for the step's result (see :meth:`suspend_for`)."""

    def __init__(self, retry_at: float, waiting: str) -> None:
        super().__init__(waiting)
        self.retry_at, self.waiting = retry_at, waiting

    def suspend_for(self, ctx: WorkflowContext) -> Suspend:
        return ctx.suspend(status="RETRYING", wake_at=self.retry_at, waiting=self.waiting)


#: Set in threads that run a workflow's steps beside it (its step pool).
_beside = threading.local()


def beside() -> bool:
    """Is this thread running a step beside its workflow's own thread?"""
    return getattr(_beside, "active", False)


class ReplayEnd(Unwind):
    """Raised in replay mode at the first call the log does not answer."""

    def __init__(self, site: CallSite) -> None:
        self.site = site
        super().__init__(f"the log ends before call #{site.call}: {site.describe()}")


@dataclass
class WorkflowContext:
    """One execution (or replay) of one workflow run."""

    host: Host
    row: WorkflowRow
    history: History
    replaying: bool = False
    call: int = 0
    position: int = 0
    cancelling: bool = False
    diverged: NonDeterminismError | None = None
    state: dict[str, Any] = field(default_factory=dict)
    #: ``durable.patched`` answers of this run: the first answer holds for the whole run.
    patches: dict[str, bool] = field(default_factory=dict)
    compensations: list[tuple[int, Step, tuple[Any, ...], dict[str, Any]]] = field(
        default_factory=list
    )
    #: Where a cancelled or timed-out run stopped before its compensations: (call, reason).
    unwound: tuple[int, str] | None = None
    driver: AsyncDriver | None = None  # hands step results to an async workflow's coroutines
    #: A pause was asked for while a step ran beside the workflow: taken at the next call.
    pause_requested: bool = False
    #: When (time.monotonic) the pending control was last learnt from the store (an
    #: append returns it); 0: never, so the first new call asks. See before_new_call.
    control_seen: float = 0.0
    #: The host's count of controls sent through it, when control_seen was last set.
    control_epoch: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: int = 0  # steps running beside the workflow's thread
    _settled: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.position = self.history.next_position
        for event in self.history.of(0) or ():
            if event.kind == COMPENSATING:
                marker = json.loads(event.payload)
                if marker["reason"] in ("cancel", "timeout"):
                    self.unwound = (marker["at"], marker["reason"])

    @property
    def workflow_id(self) -> str:
        return self.row.workflow_id

    # -- matching -------------------------------------------------------------

    def begin(
        self, family: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[CallSite, list[Recorded] | None]:
        """Take the next call number; return the call and what the log holds for it."""
        if self.diverged is not None:  # user code swallowed it: every later call fails too
            raise self.diverged
        with self._lock:
            number = self.call + 1
            if self.unwound is not None and not self.cancelling and number > self.unwound[0]:
                raise self._unwind()
            self.call = number
        try:
            digest, text = ser.digest_text(args, kwargs)
        except ser.Unserializable as error:
            raise SerializationError(
                self.workflow_id, number, f"arguments of {family} {name}", error.type_name,
                error.reason,
            ) from error
        site = new_site((number, family, name, digest, text))
        recorded = self.history.by_call.get(number)
        if (self.unwound is not None and not self.cancelling and number == self.unwound[0]
                and (recorded is None or not recorded[-1].terminal)):
            raise self._unwind()
        if recorded is None:
            if self.replaying:
                raise ReplayEnd(site)
            if not self.cancelling:
                self.host.before_new_call(self)
            return site, None
        first = recorded[0]
        if digest != first.digest or name != first.name or family != FAMILY[first.kind]:
            self.diverged = self.divergence(site, first)
            raise self.diverged
        return site, recorded

    def _unwind(self) -> BaseException:
        """Stop the body where a cancelled or timed-out run stopped the first time: the
        log holds its compensations after that call, not the rest of the body."""
        assert self.unwound is not None
        self.cancelling = True
        return Cancelled() if self.unwound[1] == "cancel" else TimedOut()

    def divergence(self, site: CallSite, recorded: Recorded | None) -> NonDeterminismError:
        where = _user_frame()
        if recorded is None:
            return NonDeterminismError(
                self.workflow_id, site.call, "nothing (the run ended there)",
                site.describe(), where, "a call was added after the recorded end of the run",
            )
        later = self.history.first_calls_after(site.call)
        return NonDeterminismError(
            self.workflow_id, site.call, recorded.describe(), site.describe(), where,
            describe_change(site, recorded, later),
        )

    def check_all_replayed(self) -> None:
        """At the end of the workflow: every recorded call must have been made again."""
        later = self.history.first_calls_after(self.call)
        if later:
            first = later[0]
            self.diverged = NonDeterminismError(
                self.workflow_id, first.call, first.describe(), "nothing (the function returned)",
                _user_frame(), f"{len(later)} recorded call(s) were removed from the code",
            )
            raise self.diverged

    # -- writing --------------------------------------------------------------

    def event(
        self, site: CallSite, kind: str, encoding: str = ser.JSON, payload: Any = None
    ) -> NewEvent:
        """A new event for ``site``, at the next position of the log."""
        with self._lock:
            position = self.position
            self.position += 1
        return NewEvent(
            position, site.call, kind, site.name, site.digest, site.args, encoding, payload
        )

    def beside(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the step pool, beside the workflow's thread. The workflow
        does not give itself up (:meth:`suspend`) while such a call still runs: its owner
        would change under it and its result would be fenced off and run again."""
        with self._settled:
            self._inflight += 1
        context = copy_context()

        def run() -> Any:
            _beside.active = True
            try:
                return context.run(fn, *args)
            finally:
                _beside.active = False
                with self._settled:
                    self._inflight -= 1
                    self._settled.notify_all()

        return self.host.submit_beside(run)

    def append(self, *events: NewEvent, **options: Any) -> None:
        """Append events (fenced). A pending pause suspends and a cancel unwinds afterwards."""
        control = self.host.store.append(self.workflow_id, self.host.owner, list(events),
                                         now=self.host.time(), **options)
        self.control_seen = time.monotonic()
        if control == "pause" and not options.get("update"):
            if beside():
                self.pause_requested = True  # the workflow's thread pauses at its next call
                return
            raise self.suspend(status="PAUSED", wake_at=None, waiting="resume")
        if control == "cancel" and not self.cancelling:
            self.cancelling = True
            raise Cancelled()

    def append_outcome(self, site: CallSite, kind: str, encoding: str, payload: Any) -> None:
        """Append the event that answers step call ``site`` (its result or final failure).

        In an async workflow the driver appends it: the order of these events is the order
        in which awaiting coroutines resume (see :class:`durable.runtime.parallel.AsyncDriver`).
        """
        if self.driver is not None:
            self.driver.append_outcome(self, site, kind, encoding, payload)
        else:
            self.append(self.event(site, kind, encoding, payload))

    def suspend(self, *events: NewEvent, status: str, wake_at: float | None, waiting: str,
                recheck: tuple[str, str] | None = None) -> Suspend:
        """Record what the workflow waits for, give it up, and return the unwinding error.

        ``recheck`` (``("signal", name)`` or ``("child", id)``) is looked at again in the
        same transaction, so a signal or child end that came meanwhile is not missed.
        """
        if not beside():
            with self._settled:  # steps running beside it record their outcomes first
                self._settled.wait_for(lambda: self._inflight == 0)
        deadline = self.row.deadline
        if deadline is not None and not self.cancelling and self.host.time() >= deadline:
            raise TimedOut()  # woken at its deadline: waiting again would loop forever
        if deadline is not None and (wake_at is None or wake_at > deadline):
            wake_at = deadline  # wake in time to fail with the workflow's timeout
        self.append(*events, update={
            "status": status, "owner": None, "wake_at": wake_at, "waiting": waiting,
            "wait_signal": recheck[1] if recheck and recheck[0] == "signal" else None,
        }, recheck=recheck)
        self.host.notify()
        if log.isEnabledFor(INFO):
            log.info("workflow %r (%s) suspended at call #%d (%s): waiting for %s",
                     self.workflow_id, self.row.name, self.call, status, waiting,
                     extra=log_fields(self.row, self.call, "suspended", status=status,
                                  waiting=waiting, wake_at=wake_at))
        return Suspend()

    def encode(self, site: CallSite, what: str, value: Any, annotation: Any,
               fix: str = RETURN_FIX) -> tuple[str, Any, Any]:
        """``(encoding, payload, decoded)``: ``value`` as the log keeps it, checked to read
        back, and the value every replay will decode (what the live run must see too);
        :class:`SerializationError` naming ``what`` (and the type) with ``fix``, what to
        do, if it cannot be."""
        try:
            encoding, payload, decoded = ser.encode_checked(value, annotation)
        except ser.Unserializable as error:
            raise SerializationError(
                self.workflow_id, site.call, what, error.type_name, error.reason, fix
            ) from error
        if len(payload) > ser.LARGE_PAYLOAD:
            _warn_large(self.workflow_id, site, len(payload))
        return encoding, payload, decoded


def _warn_large(workflow_id: str, site: CallSite, size: int) -> None:
    log.warning(
        "workflow %r call #%d (%s) records %d bytes; large payloads slow every replay: "
        "store big data elsewhere and record a reference", workflow_id, site.call,
        site.name, size,
    )


def current() -> WorkflowContext | None:
    """The running workflow's context, or None outside workflows."""
    return current_context.get()


def require(function: str) -> WorkflowContext:
    """The running workflow's context; :class:`NotInWorkflow` outside one."""
    ctx = current_context.get()
    if ctx is None or current_step_key.get() is not None:
        raise NotInWorkflow(function)
    return ctx


def _user_frame() -> str:
    """``file:line`` of the innermost caller outside the durable package."""
    frame = sys._getframe(1)
    package = __file__.rsplit("/", 1)[0]
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "<unknown>"


# -- recorded calls -------------------------------------------------------------


def record_value(function: str, produce: Callable[[], Any], args: tuple[Any, ...] = ()) -> Any:
    """A deterministic value: made once, recorded, and the same on every replay."""
    ctx = require(function)
    site, recorded = ctx.begin("value", function, args, {})
    if recorded is not None:
        return ser.loads(recorded[-1].payload)
    value = produce()
    ctx.append(ctx.event(site, "value", ser.JSON, json.dumps(value)))
    return value


def host_time() -> float:
    """The running workflow's engine clock (virtual in a test engine); time.time() outside."""
    ctx = current_context.get()
    return time.time() if ctx is None else ctx.host.time()


def now() -> datetime:
    """The current time as an aware UTC datetime, recorded: replay returns the same.

    It is the engine's clock: a test engine's virtual time.
    """
    return datetime.fromtimestamp(record_value("now", host_time), UTC)


def step_key() -> str:
    """A stable idempotency key for the running step, unique across the runs of its
    workflow id: ``workflow_id:call`` in the first run, ``workflow_id:run:call`` after
    ``continue_as_new``.

    Pass it to external systems so that a step re-run after a crash does its effect once.
    """
    key = current_step_key.get()
    if key is None:
        raise NotInWorkflow("step_key")
    return key


