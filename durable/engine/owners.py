"""Owner ids: who holds a workflow's lease, and whether that process is known to be gone.

An owner id is ``host:pid:start:machine:random``. ``start`` is the process's start time
(clock ticks since boot, from ``/proc/self/stat``): a pid reused by another process is
not mistaken for the owner. ``machine`` is a digest of the kernel's boot id and of the
pid namespace: containers that share a host name (but not a pid namespace), or a host
that rebooted, never judge each other's pids. Only an owner of this very machine
whose process is gone is recovered at once; any other waits for its lease to run out.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid

HOST = socket.gethostname()


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _machine() -> str:
    """This kernel boot and pid namespace, as 12 hex digits ("" when unknown)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    if not boot:
        return ""
    return hashlib.sha256(f"{boot}|{_pid_namespace()}".encode()).hexdigest()[:12]


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if there is none."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    # After "pid (comm)": state is field 3, starttime field 22.
    return fields[19] if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    text = _read(f"/proc/{pid}/stat")
    fields = text.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


MACHINE = _machine()


def owner_id() -> str:
    """A unique owner name for one engine: ``host:pid:start:machine:random``."""
    pid = os.getpid()
    return f"{HOST}:{pid}:{process_start(pid) or 0}:{MACHINE or '-'}:{uuid.uuid4().hex[:12]}"


def owner_gone(owner: str) -> bool:
    """True when ``owner`` ran on this machine (same host name, boot and pid namespace)
    in a process that no longer exists: its pid is free, a zombie, or now another
    process (started at another time). False whenever that cannot be known."""
    parts = owner.split(":")
    if len(parts) != 5:
        return False  # an older or foreign id: let its lease run out
    host, pid_text, start, machine, _ = parts
    if host != HOST or not MACHINE or machine != MACHINE or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, someone else's: its start time tells whether it is the owner
    now_start = process_start(pid)
    if now_start is None:
        return False
    if now_start != start:
        return True  # the pid was reused by a process started later
    return _zombie(pid)  # killed but not yet reaped by its parent: gone all the same
