"""Testing durable workflows: a time-skipping engine, a pytest fixture, and histories
replayed as regression tests.

- :class:`TestEngine`: an engine on a temporary database whose clock a test advances
  (``engine.advance(timedelta(days=2))``): sleeps, signal timeouts, retry backoffs and
  workflow timeouts fire at once.
- The ``durable_engine`` pytest fixture (a ``TestEngine``, closed after the test) comes
  with durable through the ``pytest11`` entry point: nothing to import.
- :func:`replay`: replay a history written by ``engine.export(id)`` or ``durable export
  ID`` against today's code; ``NonDeterminismError`` where the code diverges.
"""

from __future__ import annotations

from durable.testing.engine import TestEngine
from durable.testing.history import replay

__all__ = ["TestEngine", "replay"]
