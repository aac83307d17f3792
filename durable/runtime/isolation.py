"""Process isolation: ``@durable.step(isolation="process")`` runs in a child process.

The function travels with cloudpickle (lambdas and closures too). Children are started
with ``spawn`` (forking a process full of threads can inherit a held lock) and kept in a
small pool for reuse. A timeout kills the child, so a runaway step really stops; a
child that dies (segfault, ``os._exit``) is a step failure, never an engine crash.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import cloudpickle

from durable import serialization as ser
from durable.errors import StepCrashed, StepTimeout

if TYPE_CHECKING:
    from durable.runtime.registry import Step


def _serve(conn: Connection) -> None:
    """A child's loop: run shipped steps until the parent closes the pipe."""
    from durable.runtime.steps import run_in_step

    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        fn, args, kwargs, key, workflow_id = cloudpickle.loads(request)
        try:
            value = run_in_step(key, fn, args, kwargs, workflow_id)
            reply = ("ok", cloudpickle.dumps(value))
        except BaseException as error:
            reply = ("error", ser.encode_error(error))
        conn.send_bytes(cloudpickle.dumps(reply))


class _Child:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_serve, args=(child_end,), daemon=True, name="durable-step"
        )
        self.process.start()
        child_end.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessPool:
    """Child processes for isolated steps, kept warm for reuse: at most ``size`` at once
    (default: one per CPU, at least 2), since CPU-bound steps gain nothing from more and
    each child costs a Python start-up. Further steps wait for a free child; a step's
    timeout starts when a child takes it."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or max(2, os.cpu_count() or 2)
        self._free: list[_Child] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.size)

    def run(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
            workflow_id: str, call: int) -> Any:
        request = cloudpickle.dumps((step.fn, args, kwargs, key, workflow_id))
        with self._slots:
            child = self._take()
            try:
                child.conn.send_bytes(request)
                if not child.conn.poll(step.timeout):
                    child.kill()
                    raise StepTimeout(workflow_id, call, step.name, step.timeout or 0.0)
                status, payload = cloudpickle.loads(child.conn.recv_bytes())
            except (EOFError, OSError, BrokenPipeError) as error:
                child.kill()
                raise StepCrashed(workflow_id, call, step.name, child.process.exitcode) from error
            self._give_back(child)
        if status == "error":
            raise ser.decode_error(payload)
        return cloudpickle.loads(payload)

    def _take(self) -> _Child:
        with self._lock:
            while self._free:
                child = self._free.pop()
                if child.process.is_alive():
                    return child
                child.kill()
        return _Child()

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            self._free.append(child)

    def close(self) -> None:
        with self._lock:
            children, self._free = self._free, []
        for child in children:
            child.kill()


_pool: ProcessPool | None = None
_pool_lock = threading.Lock()


def run_in_process(step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                   workflow_id: str, call: int) -> Any:
    """Run ``step`` in a pooled child process (see :class:`ProcessPool`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPool()
            atexit.register(_pool.close)
        pool = _pool
    return pool.run(step, args, kwargs, key, workflow_id, call)
