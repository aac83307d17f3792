"""Opening a SQLite database for the store: WAL, pragmas, the WAL preallocation and the
numbered migrations."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator

from durable.errors import DatabaseError
from durable.store.schema import MIGRATIONS

log = logging.getLogger("durable")

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
BUSY_TIMEOUT_S = 60.0
#: WAL frames after which a commit checkpoints (PASSIVE) on its way out, per mode. At
#: "full", a small WAL that is checkpointed often starts over from its beginning and its
#: commits overwrite blocks already on disk: their fdatasync skips the file-size update
#: that an appended WAL costs, about twice as fast here. At "normal" commits do not sync,
#: and each checkpoint syncs twice: rarer is cheaper.
AUTOCHECKPOINT_FRAMES = {"full": 256, "normal": 10_000}
#: Bytes the WAL is grown to when a "full" store that preallocates opens (see
#: preallocate_wal).
WAL_PREALLOCATE = 1_536 * 1024


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    if synchronous not in SYNCHRONOUS:
        from durable.errors import InvalidArgument

        raise InvalidArgument(
            f"synchronous={synchronous!r} is not one of 'full', 'normal'; "
            "use 'full' (survives power loss) or 'normal' (survives process crashes)."
        )
    if os.path.isdir(path):
        raise DatabaseError(path, "it is a directory")
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as error:
        raise DatabaseError(path, str(error)) from error
    try:
        # Read before anything writes: a file that is not SQLite fails here untouched. One
        # read transaction, so that another process creating the schema meanwhile is seen
        # whole or not at all (else: tables without a version, "another program's file").
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as error:
        conn.close()
        raise DatabaseError(path, f"not a SQLite database ({error})") from error
    if version > len(MIGRATIONS):
        conn.close()
        raise DatabaseError(path, f"its schema version {version} is newer than this durable's")
    if version == 0 and tables & {"workflows", "events", "signals"}:
        conn.close()
        raise DatabaseError(path, "it is a SQLite database of another program")
    try:
        use_wal(conn)
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[synchronous]}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_FRAMES[synchronous]}")
        migrate(conn, version)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise DatabaseError(path, str(error)) from error
    return conn


def use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting for other processes that open it at the same time.

    Changing the journal mode needs an exclusive lock and fails at once with "database is
    locked" instead of waiting for the busy timeout: with many processes opening a new
    file together, all but one would fail. A file already in WAL is left alone.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def preallocate_wal(conn: sqlite3.Connection, path: str) -> None:
    """Grow a small WAL file to WAL_PREALLOCATE bytes of blocks on disk.

    A transaction that spills a zero blob into the WAL, then rolls back: the frames are
    never committed (nothing changes in the database, and recovery ignores them), but
    the file keeps its length. Later commits overwrite those blocks; see
    AUTOCHECKPOINT_FRAMES for why that halves the cost of their fsync.
    """
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) >= WAL_PREALLOCATE:
        return
    # Best effort, and quick: a busy database or a full disk only means slower commits.
    (cache,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute("PRAGMA busy_timeout = 100")
    conn.execute("PRAGMA cache_size = 1")  # every page spills to the WAL at once
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE durable_wal_scratch (b BLOB)")
        conn.execute("INSERT INTO durable_wal_scratch VALUES (zeroblob(?))", (WAL_PREALLOCATE,))
    except sqlite3.Error as error:
        log.debug("%s: WAL not preallocated (%s); commits are slower until it grows", path, error)
        return  # nothing was grown: nothing to sync
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute(f"PRAGMA cache_size = {cache}")
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    try:
        fd = os.open(wal, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # allocate the blocks now, not at the first commit's fdatasync
    finally:
        os.close(fd)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current == number:  # another process may have migrated meanwhile
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (``executescript`` would COMMIT on its own)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
