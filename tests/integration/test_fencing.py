"""Fencing: an executor that lost its workflow can never record a call of it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import durable
from durable.store import Fenced, NewEvent
from tests.conftest import wait_until

release = threading.Event()
ran: list[str] = []


@durable.step(name="fence.slow")
def slow(who: str) -> str:
    ran.append(who)
    if who == "first":
        release.wait(10)
    return who


@durable.workflow(name="fence.wf")
def fenced(who: str) -> str:
    return slow(who)


def test_an_append_by_a_non_owner_is_refused_and_writes_nothing(db: str) -> None:
    with durable.Engine(db, workers=0) as engine:
        engine.start(fenced, "x", workflow_id="w")
        before = len(engine.history("w"))
        with pytest.raises(Fenced):
            engine.store.append("w", "someone-else", [NewEvent(1, 1, "step.completed", "x")])
        assert len(engine.history("w")) == before


def test_a_workflow_whose_lease_expired_is_taken_over_and_the_old_owner_is_fenced(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "fence.db")
    ran.clear()
    release.clear()
    first = durable.Engine(db, workers=2, lease=60, poll_interval=0.01).open()
    try:
        first.start(fenced, "first", workflow_id="w")
        wait_until(lambda: ran == ["first"])
        # The first owner hangs (a GC pause, a frozen VM): its lease runs out.
        first.store.expire(first.owner)
        with durable.Engine(db, workers=2, poll_interval=0.01) as second:
            wait_until(lambda: len(ran) == 2, what="the second engine to take over")
            release.set()  # the first executor wakes up and tries to record its result
            assert second.handle("w").result(timeout=10) == "first"
            kinds = [e.kind for e in second.history("w")]
            assert kinds.count("step.completed") == 1  # never two records of one call
    finally:
        release.set()
        first.close()
