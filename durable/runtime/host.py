"""What the runtime needs from the engine that hosts it, and the hosts open in this process.

The runtime (a workflow's calls while it runs or replays) never imports the engine: it
talks to its host through :class:`Host`, which the engine implements and hands to each
:class:`~durable.runtime.context.WorkflowContext`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from durable.errors import NoEngine

if TYPE_CHECKING:
    from durable.replay import CallSite
    from durable.runtime.context import WorkflowContext
    from durable.runtime.registry import Step, Workflow
    from durable.store import Store


class Host(Protocol):
    """An engine, as the runtime sees it."""

    store: Store
    #: This engine's owner id: every append is fenced on it.
    owner: str
    #: Set when the engine shuts down: running workflows give themselves up.
    stopping: threading.Event
    max_recoveries: int

    def time(self) -> float:
        """The engine's clock, in seconds since the epoch (virtual in a test engine)."""

    def before_new_call(self, ctx: WorkflowContext) -> None:
        """Checks made before any call the log does not answer yet (shutdown, a pending
        cancel or pause, the workflow's deadline); raises to unwind the workflow."""

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
                 ctx: WorkflowContext, site: CallSite) -> Any:
        """Run one attempt of a step's body (in a thread with its timeout, or a process)."""

    def submit_beside(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the step pool, beside the workflow's own thread."""

    def notify(self) -> None:
        """Something changed: wake whoever waits for a result or a published event."""

    def wake(self) -> None:
        """A workflow may have become runnable: wake the dispatcher."""

    def cancel(self, workflow_id: str) -> None:
        """Cancel a workflow (a child of a run that fails or is cancelled)."""

    def run_workflow(self, wf: Workflow[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
        """Start a workflow with these arguments (a ``workflow_id`` among them is the
        workflow's own argument) and wait for its result."""


_hosts: list[Host] = []
_hosts_lock = threading.Lock()


def register_host(host: Host) -> None:
    """Make ``host`` the one direct workflow calls run on (the newest opened wins)."""
    with _hosts_lock:
        _hosts.append(host)


def unregister_host(host: Host) -> None:
    with _hosts_lock:
        if host in _hosts:
            _hosts.remove(host)


def current_host(name: str) -> Host:
    """The host most recently opened in this process, for a direct call of ``name``.

    Raises:
        NoEngine: no engine is open.
    """
    with _hosts_lock:
        if not _hosts:
            raise NoEngine(name)
        return _hosts[-1]
