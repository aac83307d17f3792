"""Hypothesis over random DAGs: every task runs exactly once, after all its dependencies;
failures skip exactly their downstream tasks; a replay runs nothing."""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable
from durable.dag import Task, TaskState, Workflow
from durable.errors import DagRunFailed


@st.composite
def random_dags(draw: st.DrawFn) -> dict[str, Any]:
    """Tasks t0..tn-1; a task depends only on lower-numbered ones, so the graph is acyclic."""
    size = draw(st.integers(min_value=1, max_value=12))
    dependencies = [
        sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))) if i else []
        for i in range(size)
    ]
    return {
        "dependencies": dependencies,
        "priorities": draw(st.lists(st.integers(-2, 2), min_size=size, max_size=size)),
        "failing": draw(st.sets(st.integers(min_value=0, max_value=size - 1), max_size=2)),
        "max_workers": draw(st.integers(min_value=1, max_value=4)),
    }


@contextmanager
def shared_engine() -> Iterator[durable.Engine]:
    with tempfile.TemporaryDirectory() as directory, durable.Engine(
        str(Path(directory) / "property.db"), workers=2, synchronous="normal",
        poll_interval=0.01,
    ) as engine:
        yield engine


ENGINE: dict[str, durable.Engine] = {}


def downstream(dependencies: list[list[int]], roots: set[int]) -> set[int]:
    """Every task that (transitively) depends on one of ``roots``."""
    found: set[int] = set()
    for i, deps in enumerate(dependencies):
        if any(d in roots or d in found for d in deps):
            found.add(i)
    return found


def test_random_dags_run_each_task_once_after_its_dependencies() -> None:
    with shared_engine() as engine:
        ENGINE["engine"] = engine
        check_random_dags()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(random_dags())
def check_random_dags(spec: dict[str, Any]) -> None:
    engine = ENGINE["engine"]
    dependencies: list[list[int]] = spec["dependencies"]
    failing: set[int] = spec["failing"]
    lock = threading.Lock()
    clock = {"tick": 0}
    started: dict[str, list[int]] = {}
    ended: dict[str, int] = {}

    def make(i: int):  # type: ignore[no-untyped-def]
        name = f"t{i}"

        def run(**upstream: Any) -> str:
            with lock:
                clock["tick"] += 1
                started.setdefault(name, []).append(clock["tick"])
            assert set(upstream) == {f"t{d}" for d in dependencies[i]}
            with lock:
                clock["tick"] += 1
                ended[name] = clock["tick"]
            if i in failing:
                raise RuntimeError(f"{name} fails")
            return name
        return run

    workflow = Workflow(f"random-{uuid.uuid4().hex[:8]}", engine=engine,
                        max_workers=spec["max_workers"])
    for i, deps in enumerate(dependencies):
        workflow.add_task(Task(name=f"t{i}", func=make(i), dependencies=[f"t{d}" for d in deps],
                               priority=spec["priorities"][i]))
    skipped = downstream(dependencies, failing)  # a failing task can be skipped first
    failed = failing - skipped
    run_id = workflow.name
    try:
        workflow.run(run_id=run_id)
        assert not failed
    except DagRunFailed as error:
        assert set(error.failed) == {f"t{i}" for i in failed}
        assert set(error.skipped) == {f"t{i}" for i in skipped}

    for i, deps in enumerate(dependencies):
        name, state = f"t{i}", workflow[f"t{i}"].state
        if i in skipped:
            assert state is TaskState.SKIPPED and name not in started
            continue
        assert len(started[name]) == 1, f"{name} ran {len(started[name])} times"
        for d in deps:
            assert started[name][0] > ended[f"t{d}"], f"{name} started before t{d} ended"
        assert state is (TaskState.FAILURE if i in failed else TaskState.SUCCESS)

    if not failing:
        runs_before = sum(len(v) for v in started.values())
        assert engine.replay(run_id)["results"] == workflow.results
        assert sum(len(v) for v in started.values()) == runs_before
