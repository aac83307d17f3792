"""A long-running loop that keeps its log small: every N iterations it ends its run with
durable.continue_as_new() and carries on as a new run of the same workflow id.

    python examples/continue_as_new.py [DB]

A workflow is resumed by replaying its log, so a loop that never ends would replay
more and more on every restart. Continuing as new starts a fresh log (the previous
runs stay in the database, linked by run number) with the loop's state as arguments.
"""

from __future__ import annotations

import os
import sys
import tempfile

import durable

PAGE = 10


@durable.step(name="feed.fetch_page")
def fetch_page(cursor: int) -> list[int]:
    return list(range(cursor, cursor + PAGE))  # stands in for an API call


@durable.step(name="feed.process")
def process(items: list[int]) -> int:
    return sum(items)


@durable.workflow(name="feed.follow")
def follow(cursor: int, total: int, until: int, every: int) -> dict[str, int]:
    for _ in range(every):
        if cursor >= until:
            break
        page = fetch_page(cursor)
        total += process(page)
        cursor += len(page)
        durable.set_event("progress", {"cursor": cursor, "total": total})
    else:
        if cursor < until:  # this run did its share: hand the state on to a fresh run
            durable.continue_as_new(cursor, total, until, every)
    return {"cursor": cursor, "total": total}


def main(db: str) -> None:
    until, every = 2_000, 25
    with durable.Engine(db, synchronous="normal") as engine:
        handle = engine.start(follow, 0, 0, until, every, workflow_id="feed")
        result = handle.result(timeout=60)
        print("result:", result)
        assert result["total"] == sum(range(until))
        (info,) = engine.list_workflows(name="feed.follow")
        history = handle.history()  # every run's events; each run opens with workflow.started
        sizes: list[int] = []
        for event in history:
            if event.kind == "workflow.started":
                sizes.append(0)
            sizes[-1] += 1
        print(f"{info.run} runs of at most {max(sizes)} events each; "
              f"{len(history)} events in all")
        print(f"a restart replays at most {max(sizes)} events, not {len(history)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(tempfile.mkdtemp(prefix="durable-"), "loop.db"))
