"""Worker threads: claim runnable workflows, run them by replay, renew leases, recover.

One dispatcher thread claims runnable workflows (new, due timers, signalled, or
abandoned by a dead owner) up to the number of free worker slots; a pool of worker
threads runs them. A heartbeat thread renews the leases this engine holds and ends
at once the leases of owners on this host whose process is gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from durable.engine.threads import DaemonPool
from durable.errors import StepTimeout
from durable.runtime.context import Cancelled, TimedOut, WorkflowContext
from durable.runtime.isolation import run_in_process
from durable.runtime.run import execute
from durable.runtime.steps import run_body
from durable.status import Status
from durable.store import Fenced, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine
    from durable.replay import CallSite
    from durable.runtime.registry import Step

log = logging.getLogger("durable")

HOST = socket.gethostname()
#: Seconds before a workflow whose execution failed inside the engine is run again.
ENGINE_ERROR_RETRY = 1.0


def owner_id() -> str:
    """A unique owner name for one engine: ``host:pid:random``."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_gone(owner: str) -> bool:
    """True when ``owner`` ran on this host in a process that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: gone all the same
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Executor:
    """The threads of one engine that run workflows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wakeup = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._pool: DaemonPool | None = None

    def start(self) -> None:
        self.recover_dead_owners()
        self.engine.store.retry_set_aside()  # new code may have been deployed: try again
        self._pool = DaemonPool(self.engine.workers, "durable-wf")
        for target, name in ((self._dispatch, "durable-dispatch"),
                             (self._heartbeat, "durable-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wakeup.set()

    def reserve(self) -> bool:
        """Take a free worker slot, if this engine runs workers and one is free."""
        if self._pool is None or self.engine.stopping.is_set():
            return False
        with self._busy_lock:
            if self._busy >= self.engine.workers:
                return False
            self._busy += 1
            return True

    def unreserve(self) -> None:
        with self._busy_lock:
            self._busy -= 1
            self._busy_lock.notify_all()

    def run_reserved(self, row: WorkflowRow) -> None:
        """Run a workflow this engine already owns on the slot taken by ``reserve``."""
        assert self._pool is not None
        self._pool.submit(self._execute, row)

    def stop(self, timeout: float) -> None:
        self._wakeup.set()
        for thread in self._threads:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        with self._busy_lock:
            while self._busy and time.monotonic() < deadline:
                self._busy_lock.wait(0.05)
        if self._pool is not None:
            self._pool.shutdown()
        # Whatever still runs (a long step) is released: its late append will be fenced.
        if self._threads:
            self.engine.store.release(self.engine.owner)

    def recover_dead_owners(self) -> None:
        for owner in self.engine.store.owners():
            if owner != self.engine.owner and owner_gone(owner):
                log.info("recovering the workflows of %s, whose process is gone", owner)
                self.engine.store.expire(owner)
                self.wake()  # claim them now, not at the next poll

    # -- threads ----------------------------------------------------------------

    def _dispatch(self) -> None:
        engine = self.engine
        while not engine.stopping.is_set():
            # Cleared before the claim: a wake-up that comes during the claim is kept.
            self._wakeup.clear()
            with self._busy_lock:
                free = engine.workers - self._busy
            claimed: list[WorkflowRow] = []
            timeout = engine.poll_interval
            if free > 0:
                now = time.time()
                try:
                    claimed = engine.store.claim(engine.owner, now, now + engine.lease, free)
                    if not claimed:  # sleep until the next timer is due, at the latest
                        due = engine.store.next_wake(now)
                        if due is not None:
                            timeout = max(0.0, min(timeout, due - time.time()))
                except Exception:  # a failed poll must not kill the dispatcher; try next tick
                    log.exception("claiming workflows failed; retrying")
            for row in claimed:
                with self._busy_lock:
                    self._busy += 1
                self.run_reserved(row)
            if not claimed:
                self._wakeup.wait(timeout)

    def _heartbeat(self) -> None:
        engine = self.engine
        interval = min(engine.lease / 3, 1.0)
        while not engine.stopping.wait(interval):
            try:
                engine.store.renew(engine.owner, time.time() + engine.lease)
                self.recover_dead_owners()
            except Exception:
                log.exception("renewing leases failed; retrying")

    # -- one workflow -------------------------------------------------------------

    def _execute(self, row: WorkflowRow) -> None:
        try:
            execute(self.engine, row)
        except Fenced:
            pass  # another executor owns it now; nothing of ours may be written
        except Exception:
            log.exception("workflow %r: the engine failed while running it; retrying in "
                          "%.0f s", row.workflow_id, ENGINE_ERROR_RETRY)
            try:  # as after a crash: retried, and counted against max_recoveries
                self.engine.store.crashed(self.engine.owner, row.workflow_id,
                                          time.time() + ENGINE_ERROR_RETRY)
            except Exception:
                log.exception("workflow %r: could not mark it for a retry; it resumes once "
                              "this engine stops", row.workflow_id)
        finally:
            with self._busy_lock:
                self._busy -= 1
                self._busy_lock.notify_all()
            self._wakeup.set()
            self.engine.notify()

    def before_new_call(self, ctx: WorkflowContext) -> None:
        """Checks made before any call that the log does not answer yet."""
        if self.engine.stopping.is_set():
            raise ctx.suspend(status=Status.RUNNING.value, wake_at=time.time(),
                              waiting="an engine (the last one shut down)")
        if ctx.row.control == "cancel":
            ctx.cancelling = True
            raise Cancelled()
        if ctx.pause_requested:
            ctx.pause_requested = False
            raise ctx.suspend(status=Status.PAUSED.value, wake_at=None, waiting="resume")
        deadline = ctx.row.deadline
        if deadline is not None and time.time() >= deadline:
            raise TimedOut()

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                 ctx: WorkflowContext, site: CallSite) -> Any:
        if step.isolation == "process":
            return run_in_process(step, args, kwargs, key, ctx.workflow_id, site.call)
        if step.timeout is None:
            return run_body(step, args, kwargs, key)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = run_body(step, args, kwargs, key)
            except BaseException as error:
                box["error"] = error

        context = copy_context()
        thread = threading.Thread(target=context.run, args=(target,), daemon=True,
                                  name=f"durable-step-{key}")
        thread.start()
        thread.join(step.timeout)
        if thread.is_alive():  # thread isolation cannot kill it: its late result is dropped
            raise StepTimeout(ctx.workflow_id, site.call, step.name, step.timeout)
        if "error" in box:
            raise box["error"]
        return box["value"]
