"""LISTEN on a dedicated direct connection: wake the engine when another process makes a
workflow runnable or changes one.

The connection is never taken from the pool, so the pool may sit behind PgBouncer in
transaction mode (which cannot LISTEN). A lost connection is re-established with
backoff, and a half-open one is found by TCP keepalives and a periodic query; after
each reconnection the subscribers are called once, for whatever was sent meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable.store.postgres_schema import KEEPALIVES, Target

log = logging.getLogger("durable")

#: Seconds between the listener's checks that its connection still answers.
CHECK_EVERY = 5.0
#: Backoff between reconnection attempts: from the first, doubling up to the last.
BACKOFF = (0.05, 2.0)
#: The payload that stops the listener whose server process id follows it.
STOP = "stop "


def _keepalives() -> dict[str, str]:
    return dict(item.split("=") for item in KEEPALIVES.split())


class Listener:
    """A thread that LISTENs on the schema's channel and calls the subscribers."""

    def __init__(self, target: Target, ignore: str = "") -> None:
        """``ignore``: the payload of notifications not passed on (the store's own)."""
        self._target = target
        self._ignore = ignore
        self._subscribers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self.backend_pid: int | None = None  # of the current LISTEN session (tests, stop)
        self.connected = threading.Event()
        self.reconnects = 0

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="durable-listen",
                                                daemon=True)
                self._thread.start()

    def stop(self, send_stop: Callable[[str], None]) -> None:
        """Stop the thread: ``send_stop(payload)`` must NOTIFY the channel with it."""
        self._stopping.set()
        thread = self._thread
        if thread is None:
            return
        pid = self.backend_pid
        if pid is not None:
            try:
                send_stop(f"{STOP}{pid}")
            except Exception:  # the server is gone: the thread notices on its own
                log.debug("could not stop the listener by NOTIFY", exc_info=True)
        thread.join(1.0)

    def _call(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback()
            except Exception:
                log.exception("a durable store subscriber failed")

    def _run(self) -> None:
        delay = BACKOFF[0]
        while not self._stopping.is_set():
            try:
                options = {**_keepalives(), **dict(self._target.listen),
                           "application_name": f"durable listen {self._target.schema}"}
                conn = psycopg.connect(make_conninfo(self._target.conninfo, **options),
                                       autocommit=True)
            except psycopg.Error as error:
                log.warning("durable listener: cannot connect to %s (%s); retrying in %.2f s",
                            self._target.label, error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._target.channel)))
                self.backend_pid = conn.info.backend_pid
                if self._stopping.is_set():  # stopped while connecting: no NOTIFY will come
                    return
                self.connected.set()
                delay = BACKOFF[0]
                self._call()  # whatever was notified while no one listened
                self._listen(conn)
            except psycopg.Error as error:
                if not self._stopping.is_set():
                    self.reconnects += 1
                    log.warning("durable listener: lost its connection to %s (%s); "
                                "reconnecting", self._target.label, error)
            finally:
                self.connected.clear()
                self.backend_pid = None
                conn.close()
            if not self._stopping.is_set():
                self._call()  # the slow poll alone must not carry the wait meanwhile
                self._stopping.wait(delay)
                delay = min(delay * 2, BACKOFF[1])

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        own_stop = f"{STOP}{self.backend_pid}"
        while not self._stopping.is_set():
            woken = False
            for notify in conn.notifies(timeout=CHECK_EVERY):
                if notify.payload == own_stop:
                    return
                if not notify.payload.startswith(STOP) and (
                        not self._ignore or notify.payload != self._ignore):
                    woken = True
                    break  # one call covers the others already queued
            if woken:
                # Drain whatever else arrived in the same packets without waiting.
                for notify in conn.notifies(timeout=0):
                    if notify.payload == own_stop:
                        return
                self._call()
            else:
                conn.execute("SELECT 1")  # the periodic check: a dead peer raises here
