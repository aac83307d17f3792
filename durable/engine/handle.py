"""A handle on one workflow, from any process that opens its database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from durable.status import Status

if TYPE_CHECKING:
    from durable.engine.engine import Engine
    from durable.events import Event


#: The workflow's result type (``Any`` for a handle from ``engine.handle(id)``).
R = TypeVar("R", default=Any)


class WorkflowHandle(Generic[R]):
    """A reference to one workflow, from any process that opens its database.

    ``engine.start(wf, ...)`` returns a ``WorkflowHandle[R]`` whose ``result()`` is the
    workflow's return type ``R``.
    """

    def __init__(self, engine: Engine, workflow_id: str) -> None:
        self.engine = engine
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id!r}>"

    def status(self) -> Status:
        """The workflow's current state."""
        return Status(self.engine.row(self.workflow_id).status)

    def result(self, timeout: float | None = None) -> R:
        """Wait for the workflow to end; return its result.

        Raises:
            WorkflowFailed: it failed (the original error is ``__cause__``).
            WorkflowCancelled: it was cancelled.
            NonDeterminismError: its code diverged from its history (it stays resumable).
            WaitTimeout: ``timeout`` seconds passed first.
        """
        value: R = self.engine.result(self.workflow_id, timeout)
        return value

    def signal(self, name: str, payload: Any = None, *, allow_pickle: bool = False) -> None:
        """Send it a signal (see Engine.send_signal)."""
        self.engine.send_signal(self.workflow_id, name, payload, allow_pickle=allow_pickle)

    def pause(self) -> None:
        self.engine.pause(self.workflow_id)

    def resume(self) -> None:
        self.engine.resume(self.workflow_id)

    def cancel(self) -> None:
        self.engine.cancel(self.workflow_id)

    def terminate(self, reason: str = "terminated by request") -> None:
        """End it at once without running its code (see Engine.terminate)."""
        self.engine.terminate(self.workflow_id, reason)

    def history(self) -> list[Event]:
        return self.engine.history(self.workflow_id)

    def get_event(self, key: str, default: Any = None, timeout: float | None = None) -> Any:
        return self.engine.get_event(self.workflow_id, key, default, timeout)
