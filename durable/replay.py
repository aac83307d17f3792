"""Pure replay logic: a workflow's recorded calls, and how a new call is matched to them.

Every recorded call of a workflow has a call number, taken when the call is made.
Its events (one or more: a step's failed attempts, then its result) share that number.
A call made again on replay must have the same *family* (step, value, sleep, signal...),
the same function name and the same digest of its arguments; otherwise the code has
diverged from the history, and :func:`describe_change` says how.

Nothing here touches a database or a clock, so it is unit-tested directly.
"""

from __future__ import annotations

import bisect
import functools
import re
from typing import Any, NamedTuple

# Event kinds are "family.outcome". Terminal kinds answer their call for good; the
# others record progress on a call that is not answered yet.
TERMINAL_KINDS = frozenset(
    {
        "step.completed",
        "step.failed",
        "value",
        "sleep.fired",
        "signal.received",
        "signal.timeout",
        "event.set",
        "state.set",
        "state.deleted",
        "patch",
        "child.completed",
        "child.failed",
        "compensation",
    }
)
PROGRESS_KINDS = frozenset({"step.retry", "sleep.started", "child.started"})
WORKFLOW_KINDS = frozenset(
    {
        "workflow.started",
        "workflow.completed",
        "workflow.failed",
        "workflow.cancelled",
        "workflow.continued",
    }
)


class _Families(dict[str, str]):
    """``FAMILY[kind]``: the family of an event kind, ``step.retry`` -> ``step``,
    remembered (replay looks it up on every call)."""

    def __missing__(self, kind: str) -> str:
        self[kind] = family = kind.partition(".")[0]
        return family


FAMILY = _Families()


def family(kind: str) -> str:
    """The family of an event kind: ``step.retry`` -> ``step``."""
    return FAMILY[kind]


class Recorded(NamedTuple):
    """One event of the log, as replay sees it (a tuple: replay builds thousands)."""

    position: int
    call: int
    kind: str
    name: str
    digest: str
    args: str
    encoding: str
    payload: Any
    created: float

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def describe(self) -> str:
        return f"{family(self.kind)} {call_text(self.name, self.args)}"


class CallSite(NamedTuple):
    """A call the code makes now, to be matched against the log.

    ``args`` is the text the digest was made from, cut short: readable in the log.
    """

    call: int
    family: str
    name: str
    digest: str
    args: str

    def describe(self) -> str:
        return f"{self.family} {call_text(self.name, self.args)}"

    def same_function(self, recorded: Recorded) -> bool:
        return self.family == family(recorded.kind) and self.name == recorded.name


class History:
    """A workflow run's recorded events, grouped by call number."""

    __slots__ = ("by_call", "count", "next_position")

    def __init__(self, events: list[Recorded]) -> None:
        """``events`` in the order of their positions, as the store returns them."""
        self.by_call: dict[int, list[Recorded]] = {}
        by_call = self.by_call
        for event in events:  # replay reads thousands: one dict lookup each
            calls = by_call.get(event.call)
            if calls is None:
                by_call[event.call] = [event]
            else:
                calls.append(event)
        self.count = len(events)
        self.next_position = events[-1].position + 1 if events else 0

    def __len__(self) -> int:
        return self.count

    def of(self, call: int) -> list[Recorded] | None:
        """The events recorded for ``call``, oldest first, or None."""
        return self.by_call.get(call)

    def add(self, event: Recorded) -> None:
        """Keep an event appended while the workflow runs, so later lookups see it."""
        self.by_call.setdefault(event.call, []).append(event)
        self.count += 1
        self.next_position = max(self.next_position, event.position + 1)

    def first_calls_after(self, call: int) -> list[Recorded]:
        """The first event of every call numbered above ``call``, in call order."""
        calls = sorted(self.by_call)
        return [
            self.by_call[n][0]
            for n in calls[bisect.bisect_right(calls, call):]
            if family(self.by_call[n][0].kind) != "workflow"
        ]


# Named tuples built in C: their own constructors are Python functions, and replay
# builds one Recorded per event read and one CallSite per call made.
#: ``recorded_from_row(row)``: a Recorded from a row of the store's event columns.
recorded_from_row = functools.partial(tuple.__new__, Recorded)
#: ``new_site((call, family, name, digest, args))``: a CallSite.
new_site = functools.partial(tuple.__new__, CallSite)


def call_text(name: str, args: str) -> str:
    """``name(args)`` from the recorded argument text: ``(1, 'a')`` or JSON ``[[...], {...}]``."""
    if args.startswith("("):
        return name + (args[:-2] + ")" if args.endswith(",)") else args)
    return f"{name}({args})"


def matches(site: CallSite, recorded: Recorded) -> bool:
    """True when ``recorded`` answers the call ``site``."""
    return site.same_function(recorded) and site.digest == recorded.digest


#: Argument values that differ on every run when a workflow makes them itself.
_VOLATILE = (
    ("a uuid", re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          r"[0-9a-fA-F]{12}"), "uuid.uuid4()", "durable.uuid4()"),
    ("a time", re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?"),
     "datetime.now()", "durable.now()"),
    ("a float", re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?"),
     "time.time() or random.random()", "durable.time() or durable.random()"),
)


def _volatile_hint(recorded: str, called: str) -> str:
    """When the arguments differ in a float, a uuid or a timestamp: the likely cause is a
    value the workflow made with time, random or uuid instead of durable's recorded ones."""
    for what, pattern, plain, recorded_call in _VOLATILE:
        then, now = pattern.findall(recorded), pattern.findall(called)
        if then != now:
            shown = f" ({then[0] if then else 'none'} then, {now[0] if now else 'none'} now)"
            return (
                f": {what} argument differs{shown}. A value that changes on every run, like "
                f"{plain} called in the workflow, must come from {recorded_call} (recorded, "
                "so replay sees the same value); if the code really changed, see below"
            )
        recorded, called = pattern.sub("", recorded), pattern.sub("", called)
    return ""


def describe_change(site: CallSite, recorded: Recorded, later: list[Recorded]) -> str:
    """How the code changed, given the recorded call at ``site.call`` and those after it.

    Args:
        site: the call the code makes now.
        recorded: the first event the log holds for that call number.
        later: the first events of the calls recorded after it, in order.
    """
    if site.same_function(recorded):
        return "the same call with other arguments" + _volatile_hint(recorded.args, site.args)
    if later and matches(site, later[0]):
        return f"the recorded call {recorded.describe()} was removed from the code"
    if any(matches(site, event) for event in later[1:]):
        return "calls were reordered"
    if any(site.same_function(event) for event in later):
        return "calls were reordered, or given other arguments"
    return f"a call was inserted before the recorded {recorded.describe()}"
