"""The start of recent runs' logs, kept in memory so that reading a run again reads
only what was appended since.

A workflow that suspends (a sleep, a signal, a retry backoff) is run again by replay
from its whole log, and a long one may suspend many times; ``Engine.replay`` reads the
log too. Reading rows is most of the cost of a replay (sqlite3 builds every column of
every row), while the events themselves never change: the log is append-only, and an
event's position is its primary key.

What is cached must be final. Appends made beside a workflow (parallel steps) can
commit out of order, so a reader may see position 7 before position 6 exists. Only a
run's *contiguous* start is kept, from its ``workflow.started`` event up to the first
missing position: every event at or below that position is committed and can never
change, and the next read asks the store only for positions after it.
"""

from __future__ import annotations

from durable.replay import Recorded

#: Events kept at most, over all runs (a few hundred bytes each); least recently read
#: runs are dropped first.
CAPACITY = 20_000


class RunCache:
    """The contiguous start of recently read runs, least recently read dropped first.

    Not thread-safe: the store calls it under its connection lock.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.size = 0  # events held, over all runs
        self._runs: dict[tuple[str, int], list[Recorded]] = {}

    def known(self, workflow_id: str, run: int) -> list[Recorded]:
        """The cached start of a run's log (empty when none): read only what follows it."""
        events = self._runs.pop((workflow_id, run), None)
        if events is None:
            return []
        self._runs[(workflow_id, run)] = events  # most recently read: dropped last
        return events

    def read(self, workflow_id: str, run: int, known: list[Recorded],
             new: list[Recorded]) -> list[Recorded]:
        """The run's events: ``known`` (from :meth:`known`) then ``new``, the events the
        store holds after it. Keeps their contiguous start for the next read."""
        events = known + new
        if not new:
            return events
        if known:
            start = known[-1].position + 1
        elif new[0].kind == "workflow.started":
            start = new[0].position
        else:
            return events  # not the start of a run: nothing to anchor a prefix to
        keep = _contiguous(new, start)
        if keep == 0 or len(known) + keep > self.capacity:
            return events
        self.size += keep
        self._runs[(workflow_id, run)] = known + new[:keep] if keep < len(new) else events
        while self.size > self.capacity:
            oldest = next(iter(self._runs))
            self.size -= len(self._runs.pop(oldest))
        return events


def _contiguous(events: list[Recorded], start: int) -> int:
    """How many of ``events`` (in position order) follow ``start`` without a gap."""
    if events[0].position != start:
        return 0
    if events[-1].position - start == len(events) - 1:  # positions are unique
        return len(events)
    for count, event in enumerate(events):
        if event.position != start + count:
            return count
    return len(events)
