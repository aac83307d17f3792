"""The pytest plugin of durable (entry point ``pytest11``): the ``durable_engine`` fixture.

Installed with durable; nothing to configure. A test that takes ``durable_engine`` gets a
:class:`~durable.testing.TestEngine` (workers running, a virtual clock it can advance) on
a new temporary database, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from durable.testing.engine import TestEngine


@pytest.fixture
def durable_engine(tmp_path: Path) -> Iterator[TestEngine]:
    """A time-skipping engine with workers on a temporary database, closed after the test."""
    with TestEngine(tmp_path / "durable.db") as engine:
        yield engine
