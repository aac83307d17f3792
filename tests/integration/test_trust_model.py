"""A model of the controls, checked by Hypothesis over start, signal, pause, resume,
cancel, terminate and kill-and-reopen (issue 10).

After every rule the engine is let settle (each workflow at rest: waiting, paused or
ended, owned by nobody), then the invariants are checked: only legal status
transitions, results equal to the model's, an append-only log with no gaps, and no
workflow left owned by a dead engine.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import durable
from durable.errors import WorkflowCancelled, WorkflowFailed, WorkflowFinished
from durable.runtime.host import unregister_host

Status = durable.Status
pytestmark = pytest.mark.slow


@durable.step(name="trustmodel.add")
def add(total: int, value: int) -> int:
    return total + value


@durable.workflow(name="trustmodel.adder")
def adder(count: int) -> int:
    total = 0
    for _ in range(count):
        total = add(total, durable.wait_for_signal("add"))
    return total


@dataclass
class Model:
    count: int
    sent: list[int] = field(default_factory=list)
    paused: bool = False
    ended: Status | None = None  # CANCELLED or FAILURE (terminated), set by a control

    def expected(self) -> Status:
        if self.ended is not None:
            return self.ended
        if self.paused:  # signals sent meanwhile are held until resume
            return Status.PAUSED
        return Status.SUCCESS if len(self.sent) >= self.count else Status.WAITING


# Statuses a settled workflow may go to from each settled status.
LEGAL = {
    Status.WAITING: {Status.WAITING, Status.PAUSED, Status.SUCCESS, Status.CANCELLED,
                     Status.FAILURE},
    Status.PAUSED: {Status.PAUSED, Status.WAITING, Status.SUCCESS, Status.CANCELLED,
                    Status.FAILURE},
    Status.SUCCESS: {Status.SUCCESS},
    Status.CANCELLED: {Status.CANCELLED},
    Status.FAILURE: {Status.FAILURE},
}


class Controls(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="durable-model-")
        self.db = f"{self.dir}/model.db"
        self.engine = self._open()
        self.models: dict[str, Model] = {}
        self.seen: dict[str, Status] = {}

    def _open(self) -> durable.Engine:
        return durable.Engine(self.db, workers=4, synchronous="normal", lease=30,
                              poll_interval=0.005).open()

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules --------------------------------------------------------------------

    @rule(target=ids, count=st.integers(1, 3))
    def start(self, count: int) -> str:
        workflow_id = f"w{len(self.models)}"
        self.engine.start(adder, count, workflow_id=workflow_id)
        self.models[workflow_id] = Model(count)
        self._settle()
        return workflow_id

    def _control(self, workflow_id: str, action: str, *args: object) -> bool:
        """Run a control; True if it was accepted, checked against the model."""
        model = self.models[workflow_id]
        finished = model.expected() in (Status.SUCCESS, Status.CANCELLED, Status.FAILURE)
        try:
            getattr(self.engine, action)(workflow_id, *args)
        except WorkflowFinished:
            assert finished, f"{action} refused for an unfinished workflow {workflow_id}"
            return False
        assert not finished, f"{action} accepted for a finished workflow {workflow_id}"
        return True

    @rule(workflow_id=ids, value=st.integers(-5, 5))
    def signal(self, workflow_id: str, value: int) -> None:
        if self._control(workflow_id, "send_signal", "add", value):
            self.models[workflow_id].sent.append(value)
        self._settle()

    @rule(workflow_id=ids)
    def pause(self, workflow_id: str) -> None:
        if self._control(workflow_id, "pause"):
            self.models[workflow_id].paused = True
        self._settle()

    @rule(workflow_id=ids)
    def resume(self, workflow_id: str) -> None:
        if self._control(workflow_id, "resume"):
            self.models[workflow_id].paused = False
        self._settle()

    @rule(workflow_id=ids)
    def cancel(self, workflow_id: str) -> None:
        if self._control(workflow_id, "cancel"):
            self.models[workflow_id].ended = Status.CANCELLED
        self._settle()

    @rule(workflow_id=ids)
    def terminate(self, workflow_id: str) -> None:
        if self._control(workflow_id, "terminate", "model"):
            self.models[workflow_id].ended = Status.FAILURE
        self._settle()

    @precondition(lambda self: bool(self.models))
    @rule(workflow_id=ids, value=st.integers(-5, 5), abrupt=st.booleans())
    def kill_and_reopen(self, workflow_id: str, value: int, abrupt: bool) -> None:
        """A signal, and at once the engine dies (its store closed under its running
        workflows, no release) or shuts down; a new engine (a new owner) takes over."""
        if self._control(workflow_id, "send_signal", "add", value):
            self.models[workflow_id].sent.append(value)
        old = self.engine
        if abrupt:
            old.stopping.set()
            unregister_host(old)
            old.store.close()  # every later write of the old engine fails
        else:
            old.close()
        self.engine = self._open()
        if abrupt:
            self.engine.store.expire(old.owner)  # its process is known to be gone
        self._settle()

    # -- settling and invariants ----------------------------------------------------

    def _settle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = {r.workflow_id: r for r in self.engine.store.workflows(None, None, 1000)}
            pending = [
                workflow_id for workflow_id, model in self.models.items()
                if (row := rows.get(workflow_id)) is None
                or row.owner is not None
                or row.status != model.expected().value
                or (row.status == Status.WAITING and row.wake_at is not None)
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                detail = {i: (rows[i].status, rows[i].owner, self.models[i].expected().value)
                          for i in pending if i in rows}
                raise AssertionError(f"not settled: {detail}")
            time.sleep(0.002)

    @invariant()
    def statuses_move_only_along_legal_transitions(self) -> None:
        for workflow_id in self.models:
            status = self.engine.handle(workflow_id).status()
            before = self.seen.get(workflow_id, Status.WAITING)
            assert status in LEGAL[before], f"{workflow_id}: {before} -> {status}"
            self.seen[workflow_id] = status

    @invariant()
    def results_equal_the_model(self) -> None:
        for workflow_id, model in self.models.items():
            handle = self.engine.handle(workflow_id)
            expected = model.expected()
            if expected is Status.SUCCESS:
                assert handle.result(timeout=1) == sum(model.sent[:model.count])
            elif expected is Status.CANCELLED:
                with pytest.raises(WorkflowCancelled):
                    handle.result(timeout=1)
            elif expected is Status.FAILURE:
                with pytest.raises(WorkflowFailed, match="terminated"):
                    handle.result(timeout=1)

    @invariant()
    def every_log_is_append_only_without_gaps(self) -> None:
        for workflow_id in self.models:
            positions = [e.position for e in self.engine.history(workflow_id)]
            assert positions == list(range(len(positions))), positions
            kinds = [e.kind for e in self.engine.history(workflow_id)]
            closing = [k for k in kinds if k in ("workflow.completed", "workflow.failed",
                                                 "workflow.cancelled")]
            assert len(closing) <= 1 and (not closing or kinds[-1] == closing[0]), kinds

    @invariant()
    def no_workflow_is_owned_by_a_dead_engine(self) -> None:
        owners = set(self.engine.store.owners())
        assert owners <= {self.engine.owner}, owners


Controls.TestCase.settings = settings(
    max_examples=200, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_controls_model = Controls.TestCase
