"""Queued workflows for the multi-process queue tests.

Every step appends a line to the file named by $EFFECTS (see apps.effects): ``start`` and
``end`` with the time and the pid, so a test can see how many ran at once, in which order
and in which process."""

from __future__ import annotations

import os
import time

from apps.effects import effect

import durable

limited = durable.Queue("limited", concurrency=2)
# One at a time per process: with three processes, only the global limit keeps it at two.
spread = durable.Queue("spread", concurrency=2, worker_concurrency=1)
rated = durable.Queue("rated", rate_limit=(2, 1.0))
ordered = durable.Queue("ordered", concurrency=1)
per_worker = durable.Queue("per_worker", worker_concurrency=1)


@durable.step
def hold(tag: str, seconds: float) -> str:
    effect(f"start {tag} {os.getpid()} {time.time():.6f}")
    time.sleep(seconds)
    effect(f"end {tag} {os.getpid()} {time.time():.6f}")
    return tag


@durable.workflow
def job(tag: str, seconds: float = 0.2) -> str:
    return hold(tag, seconds)


@durable.workflow
def fan_out(count: int) -> list[str]:
    """A parent that enqueues its children on the limited queue and waits for them."""
    handles = [durable.start_child(job, f"child-{i}", 0.2, queue=limited) for i in range(count)]
    return [h.result() for h in handles]


@durable.step
def record(what: str) -> str:
    effect(f"{what} {durable.step_key()} {os.getpid()}")
    return what


@durable.step
def gate(flag: str) -> str:
    """Fails while the file ``flag`` exists (a bug that a deploy later fixes)."""
    effect(f"gate {durable.step_key()} {os.getpid()}")
    if os.path.exists(flag):
        raise RuntimeError(f"{flag} exists")
    return "passed"


@durable.workflow
def fragile(flag: str) -> list[str]:
    return [record("charge"), record("reserve"), gate(flag), record("ship")]


@durable.workflow
def parent_leaves_child(child_id: str) -> str:
    """Starts a detached-from-waiting child that waits for a signal, and ends at once."""
    durable.start_child(waits_for_go)
    return "done"


@durable.workflow
def waits_for_go() -> str:
    return str(durable.wait_for_signal("go"))


@durable.workflow
def collect(count: int) -> list[int]:
    """Returns the payloads of ``count`` signals named ``item``."""
    return [int(durable.wait_for_signal("item")) for _ in range(count)]


#: The version of `changing` that is deployed: a test changes it to make it diverge.
VERSION = [1]


@durable.workflow
def changing() -> list[str]:
    first = record("first")
    second = record("old-second") if VERSION[0] == 1 else record("new-second")
    durable.wait_for_signal("go")
    return [first, second]
