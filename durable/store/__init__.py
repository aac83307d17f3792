"""Storage: the event log and its projections behind one small protocol.

The engine speaks only to :class:`Store`; :mod:`durable.store.sqlite` implements it.
Each method is one transaction. Another backend (Postgres) implements the same
methods without touching the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from durable.errors import Unwind
from durable.replay import Recorded

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELLED", "SKIPPED"})


class Fenced(Unwind):
    """This engine no longer owns the workflow: it must stop without writing.

    A ``BaseException`` so that user code cannot swallow it.
    """

    def __init__(self, workflow_id: str, reason: str = "it is owned by another executor") -> None:
        self.workflow_id, self.reason = workflow_id, reason
        super().__init__(f"workflow {workflow_id!r} cannot be written: {reason}")


@dataclass(slots=True)
class WorkflowRow:
    """The status projection of one workflow."""

    workflow_id: str
    name: str
    status: str
    run: int
    input_encoding: str
    input: Any
    output_encoding: str | None
    output: Any
    error: str | None
    owner: str | None
    lease_until: float | None
    wake_at: float | None
    wait_signal: str | None
    waiting: str | None
    control: str | None
    recoveries: int
    progress: int
    parent_id: str | None
    deadline: float | None
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


WORKFLOW_COLUMNS = tuple(WorkflowRow.__dataclass_fields__)


class NewEvent(NamedTuple):
    """An event to append: the store adds workflow id, run and time."""

    position: int
    call: int
    kind: str
    name: str
    digest: str = ""
    args: str = ""
    encoding: str = "json"
    payload: Any = None
    run: int | None = None  # default: the workflow's current run


class Store(Protocol):
    """What the engine needs from storage. Every method is one transaction."""

    path: str
    #: Seconds between the dispatcher's polls when nothing wakes it sooner (the engine's
    #: default ``poll_interval``): short where polling is the only way to learn of work,
    #: long (a safety net) where the store calls its subscribers.
    poll_interval: float

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) when a workflow may have become runnable or
        changed in another process; a store that cannot tell never calls it."""

    def next_wake(self, now: float) -> float | None:
        """The earliest time after ``now`` at which a timer makes a workflow runnable;
        None if there is none or the store does not say (the dispatcher polls)."""

    def create_workflow(self, row: WorkflowRow, events: list[NewEvent]) -> WorkflowRow | None:
        """Insert a workflow and its first events; the existing row if the id is taken."""

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[WorkflowRow]:
        """Take up to ``limit`` runnable workflows for ``owner``."""

    def events(self, workflow_id: str, run: int | None = None) -> list[Recorded]:
        """The events of a workflow (of one run, if given), in log order."""

    def append(
        self,
        workflow_id: str,
        owner: str,
        events: list[NewEvent],
        update: dict[str, Any] | None = None,
        consume_signal: int | None = None,
        publish: tuple[str, str, Any] | None = None,
        recheck: tuple[str, str] | None = None,
        wake: str | None = None,
    ) -> str | None:
        """Fenced append: raise :class:`Fenced` unless ``owner`` owns the workflow.

        In the same transaction: applies ``update`` to the workflow row, marks the
        signal ``consume_signal`` consumed by the first event, stores ``publish``
        (key, encoding, payload) as the latest value of a published event, wakes the
        workflow ``wake`` if it waits, and after an update that arms a wait, wakes this
        one at once if what it waits for (``("signal", name)``, ``("child", id)``) is
        already there. A pending pause replaces an update that gives the workflow up;
        a pending cancel refuses it. Returns the pending control request or None.
        """

    def next_signal(self, workflow_id: str, name: str) -> tuple[int, str, Any] | None:
        """The oldest unconsumed signal ``name``: ``(id, encoding, payload)``."""

    def retry_set_aside(self) -> None:
        """Make every workflow set aside with an error (diverged, unknown) runnable now."""

    def renew(self, owner: str, lease_until: float) -> None:
        """Extend the lease of every workflow ``owner`` holds."""

    def release(self, owner: str, workflow_id: str | None = None) -> None:
        """Give up ownership (of one workflow, or of all) so others may claim."""

    def crashed(self, owner: str, workflow_id: str, retry_at: float) -> None:
        """End the lease of a workflow whose execution failed in the engine, as if its
        process had died: claimable from ``retry_at``, and the claim counts a recovery."""

    def workflow(self, workflow_id: str) -> WorkflowRow | None:
        """One workflow's row."""

    def workflows(
        self, status: str | None, name: str | None, limit: int, parent_id: str | None = None
    ) -> list[WorkflowRow]:
        """Workflows, newest first."""

    def request_pause(self, workflow_id: str, now: float) -> None:
        """Pause an unfinished workflow: at once if nobody runs it, else ask its owner to
        (``control = 'pause'``). Nothing if it is paused already or a cancel is pending."""

    def resume(self, workflow_id: str, now: float) -> None:
        """Withdraw a pending pause, and make a paused workflow runnable at ``now``."""

    def request_cancel(self, workflow_id: str, now: float) -> None:
        """Ask an unfinished workflow to cancel (``control = 'cancel'``), waking it at
        ``now``; nothing if it is already compensating."""

    def owners(self) -> list[str]:
        """Every owner that holds a workflow now."""

    def expire(self, owner: str) -> None:
        """End the leases of ``owner`` at once (its process is known to be gone)."""

    def signals(self, workflow_id: str) -> list[tuple[Any, ...]]:
        """Every signal sent to a workflow: ``(id, name, sent, consumed_position)``."""

    def send_signal(self, workflow_id: str, name: str, encoding: str, payload: Any) -> None:
        """Queue a signal and wake the workflow if it waits for that name."""

    def published(self, workflow_id: str, key: str) -> tuple[str, Any] | None:
        """The latest published value of ``key``."""

    def close(self) -> None:
        """Close the connection."""


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_url(db: str) -> bool:
    """True when ``db`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return db.startswith(POSTGRES_SCHEMES)


def open_store(db: str, synchronous: str = "full", preallocate: bool = True) -> Store:
    """The store for ``db``: PostgreSQL for a ``postgresql://`` (or ``postgres://``) URL,
    else the SQLite file at that path. psycopg is imported only for a URL.

    ``synchronous`` and ``preallocate`` apply to SQLite; PostgreSQL commits as the
    server's ``synchronous_commit`` says.
    """
    if is_url(db):
        from durable.store.postgres import PostgresStore

        return PostgresStore(db, synchronous)
    from durable.store.sqlite import SQLiteStore

    return SQLiteStore(db, synchronous, preallocate=preallocate)
