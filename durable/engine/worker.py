"""Worker threads: claim runnable workflows, run them by replay, renew leases, recover.

One dispatcher thread claims runnable workflows (new, due timers, signalled, or
abandoned by a dead owner) up to the number of free worker slots; a pool of worker
threads runs them. A heartbeat thread renews the leases this engine holds and ends
at once the leases of owners on this host whose process is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from durable.engine.owners import owner_gone, owner_id
from durable.engine.scheduler import Scheduler
from durable.engine.threads import DaemonPool
from durable.errors import StepTimeout
from durable.runtime.context import Cancelled, TimedOut, WorkflowContext
from durable.runtime.isolation import run_in_process
from durable.runtime.queues import served_queues
from durable.runtime.run import execute
from durable.runtime.steps import run_body
from durable.status import Status
from durable.store import Fenced, StorageFailed, WorkflowRow

if TYPE_CHECKING:
    from durable.engine.engine import Engine
    from durable.replay import CallSite
    from durable.runtime.registry import Step

log = logging.getLogger("durable")

__all__ = ["Executor", "owner_gone", "owner_id"]

#: How long (seconds) the pending control an append returned is trusted before a new
#: call reads it again (see Executor._control).
CONTROL_FRESH_S = 0.001
#: Seconds before a workflow whose execution failed inside the engine is run again.
ENGINE_ERROR_RETRY = 1.0
#: Backoff after a storage error (disk full, I/O error): first and longest delay, seconds.
STORAGE_RETRY_FIRST, STORAGE_RETRY_MAX = 0.5, 30.0


class Executor:
    """The threads of one engine that run workflows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wakeup = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._pool: DaemonPool | None = None
        self.scheduler = Scheduler(engine)
        # The workflows this engine is running now: the heartbeat renews their leases
        # only. A workflow it stopped running (even one it could not release) keeps no
        # live lease, so another engine takes it over once the lease ends.
        self._running: set[str] = set()
        self._storage_failures: dict[str, int] = {}  # workflow id -> storage errors in a row

    def start(self) -> None:
        self.recover_dead_owners()
        # New code may have been deployed: try the workflows set aside again.
        self.engine.store.retry_set_aside(self.engine.time())
        self.scheduler.declare()
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

    def idle(self) -> bool:
        """No workflow runs on this engine's workers now."""
        with self._busy_lock:
            return self._busy == 0

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
            self.engine.store.release(self.engine.owner, now=self.engine.time())

    def recover_dead_owners(self) -> None:
        for owner in self.engine.store.owners():
            if owner != self.engine.owner and owner_gone(owner):
                log.info("recovering the workflows of %s, whose process is gone", owner)
                self.engine.store.expire(owner)
                self.wake()  # claim them now, not at the next poll

    # -- threads ----------------------------------------------------------------

    def _dispatch(self) -> None:
        engine = self.engine
        failures = 0
        while not engine.stopping.is_set():
            # Cleared before the claim: a wake-up that comes during the claim is kept.
            self._wakeup.clear()
            with self._busy_lock:
                free = engine.workers - self._busy
            claimed: list[WorkflowRow] = []
            timeout = engine.poll_interval
            now = engine.time()
            try:
                if self.scheduler.poll(now):
                    now = engine.time()
                if free > 0:
                    claimed = engine.store.claim(engine.owner, now, now + engine.lease, free)
                    queues = served_queues()
                    if free > len(claimed) and queues:
                        claimed += engine.store.claim_queued(
                            engine.owner, now, now + engine.lease, free - len(claimed), queues)
                    if not claimed:  # sleep until the next timer is due, at the latest
                        due = engine.store.next_wake(now)
                        if due is not None:
                            timeout = max(0.0, min(timeout, due - engine.time()))
                failures = 0
            except Exception as error:  # a failed poll must not kill the dispatcher
                failures += 1
                delay = _backoff(failures)
                log.error("claiming workflows failed (%s); retrying in %.1f s", error, delay)
                if not claimed:  # (what a first claim took still runs)
                    engine.stopping.wait(delay)
                    continue
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
                self.renew(engine.time() + engine.lease)
                self.recover_dead_owners()
            except Exception:
                log.exception("renewing leases failed; retrying")

    def renew(self, lease_until: float) -> None:
        """Extend the leases of the workflows this engine is running now (only those: a
        workflow it failed to release must be taken over when its lease ends)."""
        with self._busy_lock:
            running = list(self._running)
        self.engine.store.renew(self.engine.owner, lease_until, running)

    # -- one workflow -------------------------------------------------------------

    def _execute(self, row: WorkflowRow) -> None:
        with self._busy_lock:
            self._running.add(row.workflow_id)
        try:
            execute(self.engine, row)
            self._storage_failures.pop(row.workflow_id, None)
        except StorageFailed as failed:
            self._retry_after_storage_error(row.workflow_id, failed.error)
        except Fenced:
            pass  # another executor owns it now; nothing of ours may be written
        except Exception:
            log.exception("workflow %r: the engine failed while running it; retrying in "
                          "%.0f s", row.workflow_id, ENGINE_ERROR_RETRY)
            try:  # as after a crash: retried, and counted against max_recoveries
                self.engine.store.crashed(self.engine.owner, row.workflow_id,
                                          self.engine.time() + ENGINE_ERROR_RETRY)
            except Exception:
                log.exception("workflow %r: could not mark it for a retry; it resumes once "
                              "this engine stops", row.workflow_id)
        finally:
            with self._busy_lock:
                self._running.discard(row.workflow_id)
                self._busy -= 1
                self._busy_lock.notify_all()
            self._wakeup.set()
            self.engine.notify()

    def _retry_after_storage_error(self, workflow_id: str, error: Exception) -> None:
        """Release a workflow whose write failed in the storage, runnable again after a
        backoff. If that write fails too, its lease simply ends: it is no longer renewed."""
        failures = self._storage_failures.get(workflow_id, 0) + 1
        self._storage_failures[workflow_id] = failures
        delay = _backoff(failures)
        log.error("workflow %r: %s; retrying in %.1f s", workflow_id, error, delay)
        try:
            self.engine.store.retry_later(
                self.engine.owner, workflow_id, time.time() + delay,
                f"a retry after a storage error ({type(error).__name__})")
        except Exception as again:
            log.error("workflow %r: could not release it (%s); its lease ends in %.0f s and "
                      "it is retried then", workflow_id, again, self.engine.lease)

    def before_new_call(self, ctx: WorkflowContext) -> None:
        """Checks made before any call that the log does not answer yet."""
        if self.engine.stopping.is_set():
            raise ctx.suspend(status=Status.RUNNING.value, wake_at=self.engine.time(),
                              waiting="an engine (the last one shut down)")
        control = self._control(ctx)
        if control == "terminated":
            raise Fenced(ctx.workflow_id, "it was terminated")
        if control == "cancel":
            ctx.cancelling = True
            raise Cancelled()
        if ctx.pause_requested or control == "pause":
            ctx.pause_requested = False
            raise ctx.suspend(status=Status.PAUSED.value, wake_at=None, waiting="resume")
        deadline = ctx.row.deadline
        if deadline is not None and self.engine.time() >= deadline:
            raise TimedOut()

    def _control(self, ctx: WorkflowContext) -> str | None:
        """The workflow's pending control, read again unless it is known to be fresh.

        The row read at the claim is stale: a cancel or pause may have been accepted while
        the workflow ran plain code since its last append. Each append returns the pending
        control, so a read is needed only when a control went through this engine since
        (any cancel, pause or terminate here bumps control_epoch), or when the workflow
        has run plain code for more than CONTROL_FRESH_S since it last learnt it (a
        control sent from another process). A read per call would cost a third of a
        step's time in a tight loop of steps.
        """
        engine = self.engine
        now = time.monotonic()
        if ctx.control_epoch == engine.control_epoch and now - ctx.control_seen < CONTROL_FRESH_S:
            return None
        ctx.control_epoch, ctx.control_seen = engine.control_epoch, now
        control = engine.store.control(ctx.workflow_id)
        return control

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                 ctx: WorkflowContext, site: CallSite) -> Any:
        if step.isolation == "process":
            return run_in_process(step, args, kwargs, key, ctx.workflow_id, site.call)
        if step.timeout is None:
            return run_body(step, args, kwargs, key, ctx.workflow_id)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = run_body(step, args, kwargs, key, ctx.workflow_id)
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


def _backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` storage errors in a row: doubling, capped."""
    return float(min(STORAGE_RETRY_FIRST * 2 ** min(failures - 1, 16), STORAGE_RETRY_MAX))
