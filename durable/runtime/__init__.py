"""The workflow side: what a workflow's calls do while it runs or replays.

The context, steps and retries, values, sleep, signals, state, children, parallel
calls and isolation. It never imports the engine: see :mod:`durable.runtime.host`.
"""
