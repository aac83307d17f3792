"""Graph algorithms on a DAG's tasks: validation, topological order, critical path.

Pure functions over ``{name: Task}``. Everything is iterative (no recursion limit on a
10,000-task chain) and linear in tasks plus dependencies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping

from durable.dag.model import Task

#: Cycles listed in one error at most; the rest are counted.
MAX_CYCLES_LISTED = 10


def problems_and_order(
    tasks: Mapping[str, Task], capacity: Mapping[str, float] | None = None
) -> tuple[list[str], list[str]]:
    """Every problem of the DAG, and a topological order of the tasks not in a cycle.

    Arrows in cycle messages point from a task to one that depends on it (run order).
    """
    problems: list[str] = []
    dependents: dict[str, list[str]] = {name: [] for name in tasks}
    waiting: dict[str, int] = {}
    for name, task in tasks.items():
        own = task.problems()
        if own:
            problems.extend(own)
        count = 0
        for dep in task.dependencies:
            children = dependents.get(dep)
            if children is None:
                problems.append(f"task {name!r} depends on {dep!r}, which is not defined")
            else:
                children.append(name)
                count += 1
        waiting[name] = count
        if capacity and task.resources:
            for resource, amount in task.resources.items():
                limit = capacity.get(resource)
                if limit is not None and amount > limit:
                    problems.append(
                        f"task {name!r} needs {amount:g} {resource!r} but the workflow has only "
                        f"{limit:g}; it could never run"
                    )
    order = _kahn(tasks, dependents, waiting)
    if len(order) < len(tasks):
        placed = set(order)
        problems.extend(_cycle_problems(tasks, dependents, [n for n in tasks if n not in placed]))
    return problems, order


def _kahn(tasks: Mapping[str, Task], dependents: dict[str, list[str]],
          waiting: dict[str, int]) -> list[str]:
    remaining = dict(waiting)
    queue = deque(name for name, count in remaining.items() if count == 0)
    order: list[str] = []
    while queue:
        name = queue.popleft()
        order.append(name)
        for child in dependents[name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                queue.append(child)
    return order


def _cycle_problems(tasks: Mapping[str, Task], dependents: dict[str, list[str]],
                    stuck: list[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(tasks)}
    cycles = list(find_cycles(dependents, stuck, rank))
    found = [f"cycle: {' -> '.join(cycle)}" for cycle in cycles[:MAX_CYCLES_LISTED]]
    in_cycles = {name for cycle in cycles for name in cycle}
    if len(cycles) > MAX_CYCLES_LISTED:
        found.append(f"... and {len(cycles) - MAX_CYCLES_LISTED} more cycle(s)")
    blocked = [name for name in stuck if name not in in_cycles]
    if blocked:
        shown = ", ".join(repr(n) for n in blocked[:10])
        more = f" and {len(blocked) - 10} more" if len(blocked) > 10 else ""
        found.append(f"tasks that wait on a cycle and can never run: {shown}{more}")
    return found


def find_cycles(
    dependents: Mapping[str, list[str]], start: list[str], rank: Mapping[str, int]
) -> Iterator[list[str]]:
    """Distinct cycles reachable from ``start``, each as ``[a, b, ..., a]``, starting at the
    task defined first."""
    white, gray, black = 0, 1, 2
    color: dict[str, int] = {}
    seen: set[frozenset[str]] = set()
    for root in start:
        if color.get(root, white) != white:
            continue
        path: list[str] = [root]
        index: dict[str, int] = {root: 0}
        stack: list[Iterator[str]] = [iter(dependents.get(root, ()))]
        color[root] = gray
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                done = path.pop()
                del index[done]
                color[done] = black
                continue
            state = color.get(child, white)
            if state == gray:
                cycle = path[index[child]:]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    yield _rotate(cycle, rank)
            elif state == white:
                color[child] = gray
                index[child] = len(path)
                path.append(child)
                stack.append(iter(dependents.get(child, ())))


def _rotate(cycle: list[str], rank: Mapping[str, int]) -> list[str]:
    """``cycle`` closed on itself, starting at the task defined first."""
    first = min(range(len(cycle)), key=lambda i: rank.get(cycle[i], 0))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


def critical_path(
    tasks: Mapping[str, Task], order: list[str], durations: Mapping[str, float]
) -> tuple[list[str], float]:
    """The chain of dependent tasks with the longest total duration, and that total."""
    best: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for name in order:
        task = tasks[name]
        longest, via = 0.0, None
        for dep in task.dependencies:
            if dep in best and (via is None or best[dep] > longest):
                longest, via = best[dep], dep
        best[name] = longest + durations.get(name, 0.0)
        before[name] = via
    if not best:
        return [], 0.0
    end = max(order, key=lambda n: best[n])
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = before[node]
    return path[::-1], best[end]
