"""How a decorated step or workflow call is carried out, by where it is made.

Inside a workflow a step call is recorded (awaited in an async workflow) and a workflow
call starts a child; outside, a step is a plain call with its retry policy and a
workflow runs on the open engine. This module sits above the modules that implement
those, and installs itself as :attr:`Step.dispatch` and :attr:`Workflow.dispatch`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from durable.runtime.children import run_child
from durable.runtime.context import current_context, current_step_key
from durable.runtime.host import current_host
from durable.runtime.parallel import await_step
from durable.runtime.registry import Step, Workflow
from durable.runtime.steps import run_plain, run_step


def call_step(step: Step[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = current_context.get()
    if ctx is None or current_step_key.get() is not None:
        # Outside a workflow, or inside another step: a plain call with its retry policy.
        return run_plain(step, args, kwargs)
    site, recorded = ctx.begin("step", step.name, args, kwargs)
    if asyncio._get_running_loop() is not None:  # the public getter raises: slow here
        # An async workflow awaits the step; its call number is taken now, at the call.
        return await_step(ctx, step, site, recorded, args, kwargs)
    return run_step(ctx, step, site, recorded, args, kwargs)


def call_workflow(wf: Workflow[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = current_context.get()
    if ctx is not None and current_step_key.get() is None:
        return run_child(ctx, wf, args, kwargs)
    return current_host(wf.name).run_workflow(wf, args, kwargs)


Step.dispatch = call_step
Workflow.dispatch = call_workflow
