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

import errno
import json as jsonlib
import os
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from durable.dag.model import Task
from durable.dag.web import MAX_RESPONSE_BYTES, check_url, http_request
from durable.errors import CommandFailed, InvalidArgument

__all__ = [
    "MAX_OUTPUT_BYTES",
    "MAX_RESPONSE_BYTES",
    "atomic_write",
    "copy_file",
    "delete_file",
    "fsync_directory",
    "http",
    "http_request",
    "move_file",
    "read_file",
    "run_shell",
    "shell",
    "write_file",
    "write_in_place",
]

Upstream = dict[str, Any]
PathArg = str | os.PathLike[str]


def _value(spec: Any, upstream: Upstream) -> Any:
    return spec(upstream) if callable(spec) else spec


# -- shell ---------------------------------------------------------------------------


#: The output a shell task keeps of each stream by default (``max_output=``): the tail.
MAX_OUTPUT_BYTES = 1024 * 1024
#: After a timeout kills the process group, how long to still collect its output: a
#: process that left the group (its own session) may hold the pipes open for much longer.
KILL_GRACE = 0.5


def shell(
    name: str,
    command: Sequence[str] | Callable[[Upstream], Sequence[str]],
    *,
    timeout: float | None = None,
    cwd: PathArg | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    max_output: int = MAX_OUTPUT_BYTES,
    **task_options: Any,
) -> Task:
    """A task that runs a command (an argument list, no shell) and returns
    ``{"returncode", "stdout", "stderr"}``.

    A non-zero exit is a failure (:class:`~durable.errors.CommandFailed`, with the output
    in its message). ``timeout`` kills the command's whole process group (children and
    grandchildren too). Each of stdout and stderr keeps at most its last ``max_output``
    bytes (what is recorded in the log), starting with a line saying how much was cut.
    ``command`` may be a function of the upstream results that returns the argument list.
    """
    if isinstance(command, str | bytes):
        raise InvalidArgument(
            f"shell task {name!r}: give the command as an argument list, e.g. "
            f"{command!s}.split() or shlex.split(...), not a string"
        )
    _check_max(f"shell task {name!r}", "max_output", max_output)
    if not callable(command):
        command = [str(part) for part in command]
        if not command:
            raise InvalidArgument(f"shell task {name!r}: the command is empty")

    def run_command(**upstream: Any) -> dict[str, Any]:
        built = _value(command, upstream)
        if isinstance(built, str | bytes) or not isinstance(built, Sequence) or not built:
            raise InvalidArgument(
                f"shell task {name!r}: its command function returned {built!r}; it must "
                "return a non-empty argument list such as ['wc', '-l', path] (no shell runs "
                "the command, so a string is not split: use shlex.split(...) if you must)"
            )
        return run_shell([str(part) for part in built], timeout=timeout, cwd=cwd, env=env,
                         input=input, max_output=max_output)

    run_command.__name__ = f"shell:{name}"
    return Task(name=name, func=run_command, **task_options)


def run_shell(args: list[str], *, timeout: float | None = None, cwd: PathArg | None = None,
              env: Mapping[str, str] | None = None, input: str | None = None,
              max_output: int = MAX_OUTPUT_BYTES) -> dict[str, Any]:
    """Run ``args``; ``{"returncode", "stdout", "stderr"}``, or raise ``CommandFailed``.

    The command runs in its own session: at ``timeout`` its whole process group is killed.
    """
    environment = None if env is None else {**os.environ, **env}
    process = subprocess.Popen(
        args, cwd=cwd, env=environment, start_new_session=True,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        outputs, timed_out = _collect(process, None if input is None else input.encode(),
                                      deadline, max_output)
    except BaseException:
        _kill_group(process)
        process.wait()
        raise
    stdout, stderr = (output.text() for output in outputs)
    if timed_out:
        raise CommandFailed(_shown(args), None, stdout, stderr, timeout)
    if process.returncode != 0:
        raise CommandFailed(_shown(args), process.returncode, stdout, stderr)
    return {"returncode": process.returncode, "stdout": stdout, "stderr": stderr}


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes came before them."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.cut = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        extra = len(self.data) - self.limit
        if extra > 0:
            del self.data[:extra]
            self.cut += extra

    def text(self) -> str:
        text = self.data.decode(errors="replace")
        if self.cut:
            return (f"[durable: {self.cut} earlier bytes cut, output over max_output="
                    f"{self.limit}]\n{text}")
        return text


def _collect(process: subprocess.Popen[bytes], input: bytes | None, deadline: float | None,
             max_output: int) -> tuple[tuple[_Tail, _Tail], bool]:
    """Feed ``input`` and read both output streams (keeping their tails) until the command
    ends; at ``deadline`` kill its process group. Whether it timed out."""
    assert process.stdout is not None and process.stderr is not None
    tails = {process.stdout.fileno(): _Tail(max_output),
             process.stderr.fileno(): _Tail(max_output)}
    stdout, stderr = tails[process.stdout.fileno()], tails[process.stderr.fileno()]
    pending = memoryview(input or b"")
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for fd in tails:
            selector.register(fd, selectors.EVENT_READ)
        if process.stdin is not None:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
        while selector.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                if timed_out:  # the grace is over: stop reading pipes others still hold
                    break
                timed_out = True
                _kill_group(process)
                deadline = time.monotonic() + KILL_GRACE
                continue
            for key, _ in selector.select(wait):
                fd = key.fd
                if fd in tails:
                    chunk = os.read(fd, 64 * 1024)
                    if chunk:
                        tails[fd].add(chunk)
                    else:
                        selector.unregister(fd)
                    continue
                try:
                    written = os.write(fd, pending[:64 * 1024])
                except BrokenPipeError:  # the command stopped reading its input
                    written = len(pending)
                pending = pending[written:]
                if not pending:
                    selector.unregister(fd)
                    assert process.stdin is not None
                    process.stdin.close()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None and not stream.closed:
            stream.close()
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        process.wait(remaining)
    except subprocess.TimeoutExpired:  # it closed its output but runs on past the deadline
        timed_out = True
        _kill_group(process)
        process.wait()
    return (stdout, stderr), timed_out


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _shown(args: list[str], limit: int = 200) -> list[str]:
    """``args`` for an error message: long arguments cut (argv can hold data or secrets)."""
    return [arg if len(arg) <= limit else f"{arg[:limit]}...[{len(arg) - limit} chars cut]"
            for arg in args[:50]] + ([f"...[{len(args) - 50} more arguments]"]
                                     if len(args) > 50 else [])


def _check_max(where: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgument(f"{where}: {name} must be an int >= 1 (bytes), not {value!r}")


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
    max_bytes: int = MAX_RESPONSE_BYTES,
    **task_options: Any,
) -> Task:
    """A task that makes an HTTP request (stdlib ``urllib``) and returns
    ``{"status", "headers", "text", "json"}`` (``json`` is None unless the body is JSON).

    A 4xx/5xx status or no response is a failure
    (:class:`~durable.errors.HttpRequestFailed`). ``json=`` sends a JSON body; ``url``,
    ``json`` and ``data`` may be functions of the upstream results.

    Only ``http``/``https`` URLs are fetched. ``timeout`` bounds the whole request
    (connecting, redirects and reading together); a body over ``max_bytes`` (default
    10 MiB) fails the task. A redirect to another origin drops ``Authorization``,
    ``Cookie`` and URL credentials. Credentials and secret-looking query values (token,
    key, secret, password, signature...) are masked as ``***`` in error messages and logs,
    and ``Set-Cookie`` in the returned headers.
    """
    if json is not None and data is not None:
        raise InvalidArgument(f"http task {name!r}: give json= or data=, not both")
    if isinstance(url, str):
        check_url(url, name)
    elif not callable(url):
        raise InvalidArgument(f"http task {name!r}: url must be a string or a function of "
                              f"the upstream results, not {type(url).__name__}")
    if not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgument(f"http task {name!r}: timeout must be a number > 0, "
                              f"not {timeout!r}")
    _check_max(f"http task {name!r}", "max_bytes", max_bytes)

    def request(**upstream: Any) -> dict[str, Any]:
        body = _value(data, upstream)
        sent = dict(headers or {})
        payload = _value(json, upstream)
        if payload is not None:
            body = jsonlib.dumps(payload)
            sent.setdefault("Content-Type", "application/json")
        encoded = body.encode() if isinstance(body, str) else body
        return http_request(str(_value(url, upstream)), method=method, headers=sent,
                            data=encoded, timeout=timeout, max_bytes=max_bytes, task=name)

    request.__name__ = f"http:{name}"
    return Task(name=name, func=request, **task_options)


# -- files ---------------------------------------------------------------------------


def atomic_write(path: PathArg, content: str | bytes) -> str:
    """Write ``content`` to ``path`` atomically: readers see the old file or the new one,
    never a part (a temporary file in the same directory, fsynced, renamed over the old
    one, then the directory fsynced so the rename survives a power cut).

    A file that existed keeps its permission bits; a new one is created ``0600``. A
    symbolic link at ``path`` is replaced by the file (the link's target is untouched).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            if mode is not None:
                os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return str(target)


def fsync_directory(path: PathArg) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_in_place(path: PathArg, data: bytes, task: str = "?") -> None:
    """Write ``data`` over ``path`` (not atomic), refusing to follow a symbolic link there."""
    target = Path(path)
    try:
        handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise InvalidArgument(
            f"write task {task!r}: {str(target)!r} is a symbolic link; a non-atomic write "
            "does not follow links (it would write wherever the link points). Write to the "
            "link's real path, or use atomic=True, which replaces the link with the file"
        ) from None
    with os.fdopen(handle, "wb") as file:
        file.write(data)


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
    of the upstream results) to ``path``, atomically by default (see :func:`atomic_write`);
    returns the path. With ``atomic=False`` it writes the file in place and refuses a
    symbolic link at ``path`` (``InvalidArgument``)."""

    def write(**upstream: Any) -> str:
        target = Path(_value(path, upstream))
        value = _value(content, upstream)
        if not isinstance(value, str | bytes):
            value = jsonlib.dumps(value, indent=2, default=str)
        if atomic:
            return atomic_write(target, value)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_in_place(target, value if isinstance(value, bytes) else value.encode(), name)
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
            copied = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(copied)
            finally:
                os.close(copied)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        fsync_directory(target.parent)
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
        fsync_directory(target.parent)
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
