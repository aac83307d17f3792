"""Steps: a step call answered from the log, or run (with its retries) and recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from durable import serialization as ser
from durable.errors import SerializationError, Unwind
from durable.replay import CallSite, Recorded
from durable.runtime.context import (
    ReplayEnd,
    RetryLater,
    WorkflowContext,
    beside,
    current_step_key,
    current_step_workflow,
    log_fields,
)
from durable.store import NewEvent

if TYPE_CHECKING:
    from durable.runtime.registry import Step

log = logging.getLogger("durable")
_DEBUG, _INFO = logging.DEBUG, logging.INFO

#: Retry delays up to this long are waited in the workflow's thread; longer ones suspend.
INLINE_RETRY_DELAY = 1.0


def run_plain(step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    attempt = 1
    while True:
        try:
            if step.is_async:
                return asyncio.run(step.fn(*args, **kwargs))
            return step.fn(*args, **kwargs)
        except Exception as error:
            if not step.retry.retries(error, attempt):
                raise
            time.sleep(step.retry.delay(attempt))
            attempt += 1


def run_recorded_step(
    ctx: WorkflowContext, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    site, recorded = ctx.begin("step", step.name, args, kwargs)
    return run_step(ctx, step, site, recorded, args, kwargs)


def run_step(ctx: WorkflowContext, step: Step, site: CallSite, recorded: list[Recorded] | None,
             args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Answer a step call from the log, or run it (with retries) and record the outcome."""
    attempt = 1
    if recorded is not None:
        last = recorded[-1]
        if last.kind == "step.completed":
            return ser.decode(last.encoding, last.payload, step.returns)
        if last.kind == "step.failed":
            raise ser.decode_error(last.payload)
        retry = json.loads(last.payload)  # step.retry: attempts already failed
        if ctx.replaying:
            raise ReplayEnd(site)
        attempt = retry["attempt"] + 1
        if retry["retry_at"] > ctx.host.time():
            raise wait_for_retry(ctx, retry["retry_at"],
                                  f"retry of {step.name} (attempt {attempt})")
    key = step_key_of(ctx.workflow_id, ctx.row.run, site.call)
    while True:
        began = time.perf_counter() if log.isEnabledFor(_DEBUG) else 0.0
        try:
            value = ctx.host.run_step(step, args, kwargs, key, ctx, site)
        except Unwind:
            raise
        except BaseException as error:  # sys.exit() in a step, too: a failure, not a hang
            if not step.retry.retries(error, attempt):
                ctx.append_outcome(site, "step.failed", ser.ERROR, ser.encode_error(error))
                if began:
                    log.debug("workflow %r (%s) call #%d: step %s failed (attempt %d): %r",
                              ctx.workflow_id, ctx.row.name, site.call, step.name, attempt,
                              error, extra=log_fields(ctx.row, site.call, "step.failed",
                                                  step=step.name, attempt=attempt))
                raise
            delay = step.retry.delay(attempt)
            retry_at = ctx.host.time() + delay
            info = {"attempt": attempt, "retry_at": retry_at, "error": f"{type(error).__name__}: "
                    f"{error}"}
            event = ctx.event(site, "step.retry", ser.JSON, json.dumps(info))
            if log.isEnabledFor(_INFO):
                log.info("workflow %r (%s) call #%d: step %s failed (attempt %d of %d): %s; "
                         "retrying in %.3g s", ctx.workflow_id, ctx.row.name, site.call,
                         step.name, attempt, step.retry.max_attempts, info["error"], delay,
                         extra=log_fields(ctx.row, site.call, "step.retry", step=step.name,
                                      attempt=attempt, delay=delay, error=info["error"]))
            if delay > INLINE_RETRY_DELAY:
                raise wait_for_retry(ctx, retry_at, f"retry of {step.name} (attempt "
                                      f"{attempt + 1})", event) from None
            ctx.append(event)
            time.sleep(delay)
            attempt += 1
            continue
        try:
            encoding, payload, decoded = ctx.encode(
                site, f"result of step {step.name}", value, step.returns)
        except SerializationError as error:
            ctx.append_outcome(site, "step.failed", ser.ERROR, ser.encode_error(error))
            raise
        ctx.append_outcome(site, "step.completed", encoding, payload)
        if began:
            log.debug("workflow %r (%s) call #%d: step %s completed in %.3f ms (attempt %d)",
                      ctx.workflow_id, ctx.row.name, site.call, step.name,
                      (time.perf_counter() - began) * 1000, attempt,
                      extra=log_fields(ctx.row, site.call, "step.completed", step=step.name,
                                       attempt=attempt))
        # The workflow sees the value as every replay will decode it, not the live object
        # (which the step may still hold and change, or which JSON may not bring back).
        return decoded


def wait_for_retry(ctx: WorkflowContext, retry_at: float, waiting: str,
                    *events: NewEvent) -> BaseException:
    """What a step raises to wait for its next attempt at ``retry_at``, having recorded
    ``events``: the workflow suspends, or, for a step running beside it, a RetryLater
    that the workflow turns into its suspension when it waits for the step."""
    if not beside():
        return ctx.suspend(*events, status="RETRYING", wake_at=retry_at, waiting=waiting)
    if events:
        ctx.append(*events)
    return RetryLater(retry_at, waiting)


def step_key_of(workflow_id: str, run: int, call: int) -> str:
    """The idempotency key of call ``call`` of run ``run``: unique across runs."""
    return f"{workflow_id}:{call}" if run == 1 else f"{workflow_id}:{run}:{call}"


def run_in_step(key: str, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any], workflow_id: str | None = None) -> Any:
    """Run a step body with ``step_key()`` set (used by the engine's step runners)."""
    token = current_step_key.set(key)
    owner = current_step_workflow.set(workflow_id)
    try:
        return fn(*args, **kwargs)
    finally:
        current_step_workflow.reset(owner)
        current_step_key.reset(token)


async def run_in_step_async(key: str, step: Step, args: tuple[Any, ...],
                            kwargs: dict[str, Any], workflow_id: str | None = None) -> Any:
    """Await an async step body with ``step_key()`` set."""
    token = current_step_key.set(key)
    owner = current_step_workflow.set(workflow_id)
    try:
        return await step.fn(*args, **kwargs)
    finally:
        current_step_workflow.reset(owner)
        current_step_key.reset(token)


def run_body(step: Step, args: tuple[Any, ...], kwargs: dict[str, Any], key: str,
             workflow_id: str | None = None) -> Any:
    """One attempt of a step's body in this thread, sync or async, with its step key."""
    if step.is_async:
        return asyncio.run(run_in_step_async(key, step, args, kwargs, workflow_id))
    return run_in_step(key, step.fn, args, kwargs, workflow_id)
