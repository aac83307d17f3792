"""The cache of runs' contiguous starts: only final events are kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from durable.replay import Recorded
from durable.store.cache import RunCache


def _event(position: int, kind: str = "value") -> Recorded:
    return Recorded(position, position, kind, "now", "", "", "json", "1", 0.0)


def _run(*positions: int, start: int = 0) -> list[Recorded]:
    return [_event(start, "workflow.started"), *(_event(p) for p in positions)]


def test_a_run_read_again_is_read_only_after_its_cached_start() -> None:
    cache = RunCache()
    first = cache.read("w", 1, cache.known("w", 1), _run(1, 2))
    assert [e.position for e in first] == [0, 1, 2]
    known = cache.known("w", 1)
    assert [e.position for e in known] == [0, 1, 2]
    again = cache.read("w", 1, known, [_event(3)])
    assert [e.position for e in again] == [0, 1, 2, 3]
    assert [e.position for e in cache.known("w", 1)] == [0, 1, 2, 3]
    assert cache.size == 4


def test_only_the_start_before_a_missing_position_is_kept() -> None:
    cache = RunCache()
    # Position 2 is not committed yet (a parallel step's append): 3 is read, not kept.
    events = cache.read("w", 1, [], _run(1, 3))
    assert [e.position for e in events] == [0, 1, 3]
    assert [e.position for e in cache.known("w", 1)] == [0, 1]
    events = cache.read("w", 1, cache.known("w", 1), [_event(2), _event(3)])
    assert [e.position for e in events] == [0, 1, 2, 3]
    assert [e.position for e in cache.known("w", 1)] == [0, 1, 2, 3]


def test_a_read_that_does_not_start_a_run_is_not_kept() -> None:
    cache = RunCache()
    events = cache.read("w", 2, [], [_event(7), _event(8)])
    assert len(events) == 2
    assert cache.known("w", 2) == []
    # A later run starts at a later position: anchored by its workflow.started.
    cache.read("w", 2, [], _run(8, start=7))
    assert [e.position for e in cache.known("w", 2)] == [7, 8]


def test_the_least_recently_read_run_is_dropped_first() -> None:
    cache = RunCache(capacity=6)
    cache.read("a", 1, [], _run(1, 2))
    cache.read("b", 1, [], _run(1, 2))
    cache.known("a", 1)  # read again: b is now the oldest
    cache.read("c", 1, [], _run(1))
    assert cache.known("b", 1) == []
    assert len(cache.known("a", 1)) == 3 and len(cache.known("c", 1)) == 2
    assert cache.size == 5


def test_a_run_larger_than_the_cache_is_read_but_not_kept() -> None:
    cache = RunCache(capacity=2)
    assert len(cache.read("w", 1, [], _run(1, 2))) == 3
    assert cache.known("w", 1) == [] and cache.size == 0


@given(st.permutations(range(1, 12)), st.integers(0, 11))
def test_whatever_commits_first_the_cache_holds_a_gapless_start(
    order: list[int], committed: int
) -> None:
    """Events become visible in any order; reads in between always return what is
    visible, and the cache only what is final."""
    cache = RunCache()
    visible = {0}
    for position in [*order[:committed], None, *order[committed:]]:
        if position is not None:
            visible.add(position)
        known = cache.known("w", 1)
        after = known[-1].position if known else -1
        new = [_event(p, "workflow.started" if p == 0 else "value")
               for p in sorted(visible) if p > after]
        assert [e.position for e in cache.read("w", 1, known, new)] == sorted(visible)
        kept = [e.position for e in cache.known("w", 1)]
        assert kept == list(range(len(kept))) and set(kept) <= visible
        assert len(kept) == next(n for n in range(13) if n not in visible)
