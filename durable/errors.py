"""The whole error hierarchy of durable.

Every error a user can meet derives from :class:`DurableError`, holds its data as
attributes and says in its message what to do next. Control flow that must unwind
user code (suspension, cancellation) derives from :class:`Unwind`, a
``BaseException``, so that ``except Exception:`` in a workflow cannot swallow it.
"""

from __future__ import annotations

from typing import Any


class Unwind(BaseException):
    """durable's own control flow (a suspension, a cancellation, a lost lease...).

    Any other ``BaseException`` that escapes a step or a workflow (``sys.exit()`` in
    a worker thread, a stray ``KeyboardInterrupt`` or ``CancelledError``) is a failure
    of that step or workflow, recorded like any exception.
    """


class DurableError(Exception):
    """Base class of every error raised by durable.

    Subclasses take their data as ``__init__`` arguments; ``__reduce__`` rebuilds them
    without calling ``__init__`` again, so every durable error pickles and unpickles
    (and so survives the event log) whatever its signature.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class DatabaseError(DurableError):
    """The database file cannot be opened or is not a durable database."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"cannot open durable database {path!r}: {reason}. The file was left untouched; "
            "point durable.Engine (or --db / $DURABLE_DB) at a durable SQLite file or a new path."
        )


class StorageError(DurableError):
    """A write or read failed in the storage itself: disk full, read-only file, I/O
    error or a lock held too long by another process. Nothing of that write was kept."""

    def __init__(self, path: str, what: str, reason: str, fix: str) -> None:
        self.path, self.what, self.reason, self.fix = path, what, reason, fix
        super().__init__(f"durable database {path!r}: {what} failed: {reason}. {fix}")


class NonDeterminismError(DurableError):
    """The workflow code no longer makes the calls its history recorded."""

    def __init__(
        self, workflow_id: str, call: int, recorded: str, called: str, where: str, change: str
    ) -> None:
        self.workflow_id, self.call = workflow_id, call
        self.recorded, self.called = recorded, called
        self.where, self.change = where, change
        super().__init__(
            f"workflow {workflow_id!r} diverged from its history at call #{call}: "
            f"the log recorded {recorded}, the code now calls {called} ({where}); "
            f"it looks like {change}. "
            "Code that changes a running workflow must branch on durable.patched(), "
            "or fork the workflow with engine.fork(id, at=N)."
        )


class WorkflowNotFound(DurableError):
    """No workflow with that id exists in the database."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"no workflow {workflow_id!r} in this database; "
            "check the id with engine.list_workflows() or `durable list`."
        )


class UnknownWorkflow(DurableError):
    """A workflow name in the database has no registered function in this process."""

    def __init__(self, workflow_id: str, name: str) -> None:
        self.workflow_id, self.name = workflow_id, name
        super().__init__(
            f"workflow {workflow_id!r} runs {name!r}, which is not registered in this process; "
            "import the module that defines it (durable worker MODULE...) before recovering it."
        )


class DuplicateName(DurableError):
    """Two different functions were registered under one name."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"two different functions are registered as {kind} {name!r}; "
            f"give one of them another name with @durable.{kind}(name=...)."
        )


class WorkflowConflict(DurableError):
    """A start reused a workflow id that already runs another workflow."""

    def __init__(self, workflow_id: str, existing: str, requested: str) -> None:
        self.workflow_id, self.existing, self.requested = workflow_id, existing, requested
        super().__init__(
            f"workflow id {workflow_id!r} already runs {existing!r}, not {requested!r}; "
            "choose another workflow_id."
        )


class WorkflowFailed(DurableError):
    """The workflow ended in FAILURE; the original error is ``__cause__``."""

    def __init__(self, workflow_id: str, name: str, error: str) -> None:
        self.workflow_id, self.name, self.error = workflow_id, name, error
        super().__init__(
            f"workflow {workflow_id!r} ({name}) failed: {error}. "
            f"See engine.history({workflow_id!r}) or `durable history {workflow_id}`; "
            "fix the cause and fork it with engine.fork(id, at=N) to run it again."
        )


class WorkflowCancelled(DurableError):
    """The workflow was cancelled."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"workflow {workflow_id!r} was cancelled; start a new one to run it again."
        )


class WorkflowFinished(DurableError):
    """A control call (signal, pause, cancel) reached a workflow that already ended."""

    def __init__(self, workflow_id: str, status: str, action: str) -> None:
        self.workflow_id, self.status, self.action = workflow_id, status, action
        super().__init__(
            f"cannot {action} workflow {workflow_id!r}: it already ended as {status}; "
            "start a new workflow instead."
        )


class WorkflowTimeout(DurableError):
    """The workflow ran past its ``timeout``."""

    def __init__(self, workflow_id: str, timeout: float) -> None:
        self.workflow_id, self.timeout = workflow_id, timeout
        super().__init__(
            f"workflow {workflow_id!r} ran past its timeout of {timeout:g} s; "
            "raise @durable.workflow(timeout=...) if it needs longer."
        )


class WaitTimeout(DurableError, TimeoutError):
    """Waiting for a result or an event took longer than the caller allowed."""

    def __init__(self, workflow_id: str, what: str, timeout: float) -> None:
        self.workflow_id, self.what, self.timeout = workflow_id, what, timeout
        super().__init__(
            f"workflow {workflow_id!r}: {what} not available after {timeout:g} s; "
            "wait longer, or check its status with `durable show`."
        )


class StepTimeout(DurableError):
    """A step ran past its ``timeout``."""

    def __init__(self, workflow_id: str, call: int, name: str, timeout: float) -> None:
        self.workflow_id, self.call, self.name, self.timeout = workflow_id, call, name, timeout
        super().__init__(
            f"step {name} (call #{call} of workflow {workflow_id!r}) ran past its timeout of "
            f"{timeout:g} s; raise @durable.step(timeout=...) or make the step faster."
        )


class StepCrashed(DurableError):
    """A process-isolated step's child process died without an answer."""

    def __init__(self, workflow_id: str, call: int, name: str, exitcode: int | None) -> None:
        self.workflow_id, self.call, self.name, self.exitcode = workflow_id, call, name, exitcode
        super().__init__(
            f"step {name} (call #{call} of workflow {workflow_id!r}) crashed its child process "
            f"(exit code {exitcode}); it is retried per its RetryPolicy."
        )


class RecoveryLimitExceeded(DurableError):
    """A workflow crashed its process during recovery too many times."""

    def __init__(self, workflow_id: str, attempts: int) -> None:
        self.workflow_id, self.attempts = workflow_id, attempts
        super().__init__(
            f"workflow {workflow_id!r} was recovered {attempts} times without progress, each "
            "time losing its process (or failing inside the engine: see the worker's log); "
            "it was stopped as FAILURE so it cannot crash workers forever. Find the step "
            "that kills the process, fix it, then engine.fork(id, at=N)."
        )


class SerializationError(DurableError):
    """A value cannot be written to (or read back from) the event log."""

    def __init__(self, workflow_id: str, call: int, what: str, type_name: str, reason: str) -> None:
        self.workflow_id, self.call, self.what, self.type_name = workflow_id, call, what, type_name
        super().__init__(
            f"workflow {workflow_id!r}, call #{call} ({what}): a value of type {type_name} "
            f"cannot be recorded: {reason}. Return JSON data, a pydantic model or dataclass "
            "with a matching annotation, or a picklable object."
        )


class NotInWorkflow(DurableError):
    """A workflow-only function was called outside a running workflow."""

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(
            f"durable.{function}() was called outside a workflow; call it from a function "
            "decorated with @durable.workflow, run by an Engine."
        )


class NoEngine(DurableError):
    """A workflow was called directly while no engine is open."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"workflow {name} was called directly, but no durable.Engine is open; "
            "open one first: `with durable.Engine('app.db'): ...`."
        )


class EngineClosed(DurableError):
    """The engine was used after it was closed."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"the engine on {path!r} is closed; open a new durable.Engine to continue."
        )


class InvalidArgument(DurableError, ValueError):
    """An argument to a durable API has a value it cannot accept."""


class DagValidationError(DurableError):
    """A DAG definition is invalid; ``problems`` lists every problem found."""

    def __init__(self, workflow: str, problems: list[str]) -> None:
        self.workflow, self.problems = workflow, problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"DAG workflow {workflow!r} is invalid ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n{listed}\n"
            "Fix the task definitions before running."
        )


class DagRunFailed(DurableError):
    """Some tasks of a DAG run failed; their dependents were skipped."""

    def __init__(self, workflow: str, run_id: str, failed: dict[str, str], skipped: list[str]):
        self.workflow, self.run_id, self.failed, self.skipped = workflow, run_id, failed, skipped
        failed_text = "; ".join(f"{name}: {error}" for name, error in failed.items())
        super().__init__(
            f"DAG {workflow!r} run {run_id!r}: {len(failed)} task(s) failed ({failed_text}); "
            f"skipped: {', '.join(skipped) or 'none'}. Fix the failing tasks and run again "
            "with the same run_id to resume: tasks that succeeded do not run again."
        )


class RecordedError(Exception):
    """Stands in for a recorded exception whose class cannot be rebuilt on replay.

    It keeps the original type name, message and traceback text.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        self.type_name, self.message, self.traceback_text = type_name, message, traceback_text
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (RecordedError, (self.type_name, self.message, self.traceback_text))


# -- DAG runner (durable.dag) ---------------------------------------------------------


class TaskDefinitionError(InvalidArgument):
    """A DAG task or workflow is defined with values it cannot accept."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what, self.problems = what, problems
        Exception.__init__(
            self,
            f"{what} is not valid: {'; '.join(problems)}. Fix the definition; nothing has run.",
        )


class TaskTimeout(StepTimeout):
    """One attempt of a DAG task ran past the task's ``timeout``."""

    def __init__(self, workflow_id: str, call: int, task: str, timeout: float) -> None:
        self.workflow_id, self.call, self.name, self.timeout = workflow_id, call, task, timeout
        DurableError.__init__(
            self,
            f"task {task!r} (call #{call} of DAG run {workflow_id!r}) ran past its timeout of "
            f"{timeout:g} s; it is retried per its max_retries. Raise Task(timeout=...) or "
            "make the task faster.",
        )


class CircuitOpen(DurableError):
    """A task was not attempted: its circuit breaker is open after repeated failures."""

    def __init__(self, breaker: str, failures: int, retry_after: float) -> None:
        self.breaker, self.failures, self.retry_after = breaker, failures, retry_after
        super().__init__(
            f"circuit breaker {breaker!r} is open after {failures} consecutive failure(s); "
            f"calls fail fast for another {retry_after:.1f} s. Fix the resource, or run again "
            "after the cool-down (the same run_id resumes)."
        )


class TaskResultUnavailable(DurableError, LookupError):
    """``get_task_result`` asked for a result that does not exist (yet)."""

    def __init__(self, workflow: str, task: str, reason: str) -> None:
        self.workflow, self.task, self.reason = workflow, task, reason
        super().__init__(
            f"DAG {workflow!r} has no result for task {task!r}: {reason}. A task may only read "
            "the results of tasks it lists in its dependencies."
        )


class DagNotDefined(DurableError):
    """A DAG run was recovered in a process that does not define that DAG."""

    def __init__(self, workflow: str, run_id: str) -> None:
        self.workflow, self.run_id = workflow, run_id
        super().__init__(
            f"DAG run {run_id!r} needs the DAG {workflow!r}, which no durable.dag.Workflow "
            "defines in this process; import the module that builds it before opening the "
            "engine, then run it again with the same run_id."
        )


class CommandFailed(DurableError):
    """A shell task's command exited with a non-zero status (or ran past its timeout)."""

    def __init__(self, command: list[str], returncode: int | None, stdout: str, stderr: str,
                 timeout: float | None = None) -> None:
        self.command, self.returncode = command, returncode
        self.stdout, self.stderr, self.timeout = stdout, stderr, timeout
        what = (f"ran past its timeout of {timeout:g} s and was killed" if returncode is None
                else f"exited with status {returncode}")
        output = "\n".join(part for part in (
            f"stderr: {stderr.strip()[-2000:]}" if stderr.strip() else "",
            f"stdout: {stdout.strip()[-2000:]}" if stdout.strip() else "",
        ) if part)
        super().__init__(
            f"command {command!r} {what}" + (f"\n{output}" if output else "")
            + "\nFix the command or its input; the task is retried per its max_retries."
        )


class HttpRequestFailed(DurableError):
    """An HTTP task got an error status, or no response at all."""

    def __init__(self, method: str, url: str, status: int | None, reason: str,
                 body: str = "") -> None:
        self.method, self.url, self.status, self.reason, self.body = (
            method, url, status, reason, body)
        got = f"status {status} {reason}" if status is not None else f"no response ({reason})"
        super().__init__(
            f"{method} {url} failed with {got}"
            + (f": {body[:500]}" if body else "")
            + ". Check the URL and the service; the task is retried per its max_retries."
        )
