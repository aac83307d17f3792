"""A time-skipping engine for tests: its clock is the wall clock plus the time a test
advanced it by, so a two-day sleep fires as soon as the test says two days passed."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from datetime import timedelta

from durable.engine import Engine
from durable.errors import InvalidArgument

#: A test engine's lease: one process owns its workflows; advancing the clock must not
#: make its own leases look expired (it renews them too, when it advances).
TEST_LEASE = 365 * 24 * 3600.0


class TestEngine(Engine):
    """An :class:`~durable.Engine` with a virtual clock, on a temporary database.

    ``engine.time()`` (and so ``durable.now()``, ``durable.time()``, sleeps, signal
    timeouts, retry backoffs, workflow timeouts and anything else scheduled on the
    engine's clock) is the wall clock plus what :meth:`advance` added: time keeps
    flowing as usual, and a test jumps over the long waits.

    Args:
        db: the database file; by default a new one in a temporary folder, removed at
            :meth:`close`.
        workers, synchronous, poll_interval: as for :class:`~durable.Engine`, with test
            defaults (fast polling, ``synchronous="normal"``).

    Example:
        >>> with TestEngine() as engine:
        ...     handle = engine.start(reminder, "ann")   # sleeps two days
        ...     engine.advance(timedelta(days=2))
        ...     assert handle.result(timeout=5) == "reminded ann"
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, db: str | os.PathLike[str] | None = None, *, workers: int = 4,
                 synchronous: str = "normal", poll_interval: float = 0.01,
                 max_recoveries: int = 5) -> None:
        self._folder = None if db is not None else tempfile.mkdtemp(prefix="durable-test-")
        path = db if db is not None else os.path.join(self._folder or "", "durable.db")
        self._offset = 0.0
        self._clock_lock = threading.Lock()
        super().__init__(path, workers=workers, synchronous=synchronous, lease=TEST_LEASE,
                         max_recoveries=max_recoveries, poll_interval=poll_interval)

    def time(self) -> float:
        """The virtual clock: the wall clock plus every :meth:`advance` so far."""
        return time.time() + self._offset

    @property
    def advanced(self) -> float:
        """Seconds the clock was advanced by, in all."""
        return self._offset

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing runs or is runnable now: every unfinished workflow waits
        (for a timer, a signal, a child, a retry) or is paused. False after ``timeout``
        seconds if something still runs (a long step)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.time()
            rows = self.store.workflows(None, None, 1_000_000)
            if self.idle() and all(
                row.finished or (row.owner is None and (row.wake_at is None or row.wake_at > now))
                for row in rows
            ):
                return True
            if time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(self.poll_interval)

    def advance(self, by: float | timedelta, settle: float = 10.0) -> None:
        """Move the clock forward by ``by`` (seconds or a timedelta) and wake the workers:
        every timer, timeout and retry due by then fires now.

        First it lets the workflows run until each waits (see :meth:`settle`, up to
        ``settle`` seconds), so that ``engine.start(wf); engine.advance(days=2)`` moves
        the clock after ``wf`` reached its sleep, not before.
        """
        seconds = by.total_seconds() if isinstance(by, timedelta) else by
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise InvalidArgument(
                f"TestEngine.advance({by!r}): give seconds >= 0 or a timedelta; the clock "
                "only moves forward"
            )
        if self.workers:
            self.settle(settle)
        with self._clock_lock:
            # Leases first, at the new time: no claim may take this engine's own runs.
            self.renew_leases(time.time() + self._offset + seconds + self.lease)
            self._offset += seconds
        self.wake()

    def close(self, timeout: float = 10.0) -> None:
        super().close(timeout)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
