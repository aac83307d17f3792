"""Ready-made tasks: shell commands, HTTP requests, file operations.

Each factory returns a :class:`~durable.dag.Task` and takes the usual Task options
(``dependencies``, ``max_retries``, ``timeout``...) as keyword arguments. Where an argument
may depend on upstream results, it can be a function of ``{dependency: result}``.

Example:
    >>> from durable.dag import tasks
    >>> wf.add_task(tasks.shell("count", ["wc", "-l", "data.csv"], timeout=10))
    >>> wf.add_task(tasks.http("rates", "https://api.example.com/rates", max_retries=3))
"""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from durable.dag.model import Task
from durable.errors import CommandFailed, HttpRequestFailed, InvalidArgument

Upstream = dict[str, Any]
PathArg = str | os.PathLike[str]


def _value(spec: Any, upstream: Upstream) -> Any:
    return spec(upstream) if callable(spec) else spec


# -- shell ---------------------------------------------------------------------------


def shell(
    name: str,
    command: Sequence[str] | Callable[[Upstream], Sequence[str]],
    *,
    timeout: float | None = None,
    cwd: PathArg | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    **task_options: Any,
) -> Task:
    """A task that runs a command (an argument list, no shell) and returns
    ``{"returncode", "stdout", "stderr"}``.

    A non-zero exit is a failure (:class:`~durable.errors.CommandFailed`, with the output
    in its message). ``timeout`` kills the command's whole process group.
    """
    if isinstance(command, str | bytes):
        raise InvalidArgument(
            f"shell task {name!r}: give the command as an argument list, e.g. "
            f"{command!s}.split() or shlex.split(...), not a string"
        )
    if not callable(command):
        command = [str(part) for part in command]
        if not command:
            raise InvalidArgument(f"shell task {name!r}: the command is empty")

    def run_command(**upstream: Any) -> dict[str, Any]:
        args = [str(part) for part in _value(command, upstream)]
        return run_shell(args, timeout=timeout, cwd=cwd, env=env, input=input)

    run_command.__name__ = f"shell:{name}"
    return Task(name=name, func=run_command, **task_options)


def run_shell(args: list[str], *, timeout: float | None = None, cwd: PathArg | None = None,
              env: Mapping[str, str] | None = None, input: str | None = None) -> dict[str, Any]:
    """Run ``args``; ``{"returncode", "stdout", "stderr"}``, or raise ``CommandFailed``."""
    environment = None if env is None else {**os.environ, **env}
    process = subprocess.Popen(
        args, cwd=cwd, env=environment, text=True, start_new_session=True,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        raise CommandFailed(args, None, stdout, stderr, timeout) from None
    except BaseException:
        _kill_group(process)
        raise
    if process.returncode != 0:
        raise CommandFailed(args, process.returncode, stdout, stderr)
    return {"returncode": process.returncode, "stdout": stdout, "stderr": stderr}


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


# -- http ----------------------------------------------------------------------------


def http(
    name: str,
    url: str | Callable[[Upstream], str],
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    data: bytes | str | Callable[[Upstream], bytes | str] | None = None,
    timeout: float = 30.0,
    **task_options: Any,
) -> Task:
    """A task that makes an HTTP request (stdlib ``urllib``) and returns
    ``{"status", "headers", "text", "json"}`` (``json`` is None unless the body is JSON).

    A 4xx/5xx status or no response is a failure
    (:class:`~durable.errors.HttpRequestFailed`). ``json=`` sends a JSON body; ``url``,
    ``json`` and ``data`` may be functions of the upstream results.
    """
    if json is not None and data is not None:
        raise InvalidArgument(f"http task {name!r}: give json= or data=, not both")

    def request(**upstream: Any) -> dict[str, Any]:
        body = _value(data, upstream)
        sent = dict(headers or {})
        payload = _value(json, upstream)
        if payload is not None:
            body = jsonlib.dumps(payload)
            sent.setdefault("Content-Type", "application/json")
        encoded = body.encode() if isinstance(body, str) else body
        return http_request(str(_value(url, upstream)), method=method, headers=sent,
                            data=encoded, timeout=timeout)

    request.__name__ = f"http:{name}"
    return Task(name=name, func=request, **task_options)


def http_request(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                 data: bytes | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Make one request; the response as a dict, or raise ``HttpRequestFailed``."""
    method = method.upper()
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status = response.status
            raw = response.read()
            response_headers = dict(response.headers.items())
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace") if error.fp is not None else ""
        raise HttpRequestFailed(method, url, error.code, str(error.reason), text) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HttpRequestFailed(method, url, None, str(reason)) from None
    text = raw.decode(errors="replace")
    parsed = None
    if "json" in response_headers.get("Content-Type", "").lower():
        try:
            parsed = jsonlib.loads(text)
        except ValueError:
            parsed = None
    return {"status": status, "headers": response_headers, "text": text, "json": parsed}


# -- files ---------------------------------------------------------------------------


def atomic_write(path: PathArg, content: str | bytes) -> str:
    """Write ``content`` to ``path`` atomically: readers see the old file or the new one,
    never a part (a temporary file in the same directory, fsynced, then renamed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(target)


def read_file(name: str, path: PathArg | Callable[[Upstream], PathArg], *,
              binary: bool = False, encoding: str = "utf-8", **task_options: Any) -> Task:
    """A task that returns a file's content (text, or bytes with ``binary=True``)."""

    def read(**upstream: Any) -> str | bytes:
        target = Path(_value(path, upstream))
        return target.read_bytes() if binary else target.read_text(encoding=encoding)

    return Task(name=name, func=read, **task_options)


def write_file(name: str, path: PathArg | Callable[[Upstream], PathArg],
               content: Any, *, atomic: bool = True, **task_options: Any) -> Task:
    """A task that writes ``content`` (text, bytes, or anything else as JSON; or a function
    of the upstream results) to ``path``, atomically by default; returns the path."""

    def write(**upstream: Any) -> str:
        target = Path(_value(path, upstream))
        value = _value(content, upstream)
        if not isinstance(value, str | bytes):
            value = jsonlib.dumps(value, indent=2, default=str)
        if atomic:
            return atomic_write(target, value)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            target.write_bytes(value)
        else:
            target.write_text(value)
        return str(target)

    return Task(name=name, func=write, **task_options)


def copy_file(name: str, source: PathArg, destination: PathArg, **task_options: Any) -> Task:
    """A task that copies a file atomically (a partial copy is never visible); returns the
    destination."""

    def copy(**upstream: Any) -> str:
        target = Path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(handle)
        try:
            shutil.copy2(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return str(target)

    return Task(name=name, func=copy, **task_options)


def move_file(name: str, source: PathArg, destination: PathArg, **task_options: Any) -> Task:
    """A task that moves a file; returns the destination. Idempotent: if the source is gone
    and the destination exists (a move done before a crash), it succeeds."""

    def move(**upstream: Any) -> str:
        src, target = Path(source), Path(destination)
        if not src.exists() and target.exists():
            return str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(target))
        return str(target)

    return Task(name=name, func=move, **task_options)


def delete_file(name: str, path: PathArg, *, missing_ok: bool = True,
                **task_options: Any) -> Task:
    """A task that deletes a file; returns whether it existed."""

    def delete(**upstream: Any) -> bool:
        target = Path(path)
        existed = target.exists()
        target.unlink(missing_ok=missing_ok)
        return existed

    return Task(name=name, func=delete, **task_options)
