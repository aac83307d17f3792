"""The engine: starts workflows, runs them on worker threads, and answers about them."""

from durable.engine.engine import Engine
from durable.engine.handle import WorkflowHandle

__all__ = ["Engine", "WorkflowHandle"]
