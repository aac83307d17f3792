"""Opening a SQLite database for the store: WAL, pragmas, the WAL preallocation and the
numbered migrations."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from durable.errors import DatabaseError, InvalidArgument, NotADurableDatabase, StorageError
from durable.store.schema import MIGRATIONS
from durable.store.sqlite_errors import mapped

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
#: Stamped in every durable database's header (``PRAGMA application_id``): "dura".
APPLICATION_ID = 0x64757261
#: The tables durable's migrations create; a file with any other table is not durable's.
DURABLE_TABLES = frozenset(
    re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", "".join(MIGRATIONS)))
#: Seconds to wait for other connections while switching a file to WAL.
WAL_SWITCH_TIMEOUT_S = BUSY_TIMEOUT_S
#: Seconds to retry when SQLite answers with another journal mode instead of WAL.
WAL_REFUSED_S = 1.0
_NOT_A_DATABASE = 26  # SQLITE_NOTADB


def connect(path: str, synchronous: str, read_only: bool = False) -> sqlite3.Connection:
    """The store's writing connection (read-only with ``read_only``), on a durable file.

    The file is checked before anything is written: an existing SQLite file of another
    program is refused with NotADurableDatabase and left byte for byte as it was (its
    journal mode too). A new file is created mode 0600 and stamped APPLICATION_ID.
    """
    if synchronous not in SYNCHRONOUS:
        raise InvalidArgument(
            f"synchronous={synchronous!r} is not one of 'full', 'normal'; "
            "use 'full' (survives power loss) or 'normal' (survives process crashes)."
        )
    if path in ("", ":memory:") or path.startswith("file::memory:") or "mode=memory" in path:
        raise InvalidArgument(
            f"durable.Engine({path!r}): an in-memory SQLite database cannot hold a durable "
            "log: the engine's reader connection and other processes (workers, the CLI) "
            "must open the same file. Use a file, e.g. in a temporary folder "
            "(tmp_path / 'test.db' in pytest), or durable.testing's TestEngine / fixture.")
    if os.path.isdir(path):
        raise DatabaseError(path, "it is a directory")
    if read_only and not os.path.exists(path):
        raise DatabaseError(path, "no such file (a read-only open never creates one)")
    if not read_only:
        _create_private(path)
    try:
        conn = _open(path, read_only)
    except sqlite3.Error as error:
        raise DatabaseError(path, str(error)) from error
    try:
        # Read before anything writes: a file that is not SQLite fails here untouched. One
        # read transaction, so that another process creating the schema meanwhile is seen
        # whole or not at all (else: tables without a version, "another program's file").
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.execute("COMMIT")
    except sqlite3.DatabaseError as error:
        conn.close()
        if getattr(error, "sqlite_errorcode", None) == _NOT_A_DATABASE:
            raise DatabaseError(path, f"not a SQLite database ({error})") from error
        raise mapped(path, "reading the database header", error) from error
    try:
        _check_ours(path, application_id, version, tables)
        if read_only and version < len(MIGRATIONS):
            raise DatabaseError(path, (
                "it is empty" if version == 0 else "its schema is older than this durable's"
            ) + " and a read-only open cannot create or upgrade it; run a writable engine "
                "(e.g. `durable worker`) on it first")
    except DatabaseError:
        conn.close()
        raise
    if read_only:
        return conn
    try:
        use_wal(conn, path)
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[synchronous]}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_FRAMES[synchronous]}")
        migrate(conn, version)
        if version and application_id != APPLICATION_ID:  # made by an older durable
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
    except (sqlite3.Error, StorageError) as error:
        conn.close()
        if isinstance(error, StorageError):
            raise
        raise mapped(path, "opening the database", error) from error
    return conn


def open_reader(path: str, read_only: bool) -> sqlite3.Connection:
    """The store's second connection, for reads."""
    return _open(path, read_only)


def _open(path: str, read_only: bool) -> sqlite3.Connection:
    if read_only:  # mode=ro: SQLite itself refuses every write, and never creates the file
        target, uri = Path(path).absolute().as_uri() + "?mode=ro", True
    else:
        target, uri = path, False
    return sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_S, uri=uri)


def _create_private(path: str) -> None:
    """Create a missing database file mode 0600 before SQLite opens it: SQLite creates the
    WAL and SHM files with the main file's mode, so the log stays private to its owner."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing file keeps its mode
    except OSError as error:
        raise DatabaseError(path, f"cannot create it ({error.strerror})") from error


def _check_ours(path: str, application_id: int, version: int, tables: set[str]) -> None:
    """Refuse a SQLite file that is not durable's (see connect)."""
    if application_id not in (0, APPLICATION_ID):
        raise NotADurableDatabase(
            path, f"its application_id is {application_id:#x}, durable's is {APPLICATION_ID:#x}")
    if application_id == APPLICATION_ID and version > len(MIGRATIONS):
        raise DatabaseError(path, f"its schema version {version} is newer than this durable's")
    foreign = sorted(t for t in tables if t not in DURABLE_TABLES and not t.startswith("sqlite_"))
    if foreign:
        raise NotADurableDatabase(path, f"it has tables of its own: {', '.join(foreign[:5])}")
    if tables and version == 0:
        raise NotADurableDatabase(path, "it has durable's table names but no durable schema")
    if version > len(MIGRATIONS):
        raise DatabaseError(path, f"its schema version {version} is newer than this durable's")


def use_wal(conn: sqlite3.Connection, path: str) -> None:
    """Switch the file to WAL, waiting for other processes that open it at the same time.

    Changing the journal mode needs an exclusive lock and fails at once with "database is
    locked" instead of waiting for the busy timeout: with many processes opening a new
    file together, all but one would fail. A file already in WAL is left alone. A file
    that stays locked (another program holds it in another journal mode) or that cannot
    use WAL at all (no shared memory) raises StorageError after a bounded wait.
    """
    started = time.monotonic()
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
    if mode == "wal":
        return
    # Each attempt waits a little for the lock, not the whole busy timeout: the loop
    # below bounds the total wait.
    conn.execute("PRAGMA busy_timeout = 100")
    try:
        _switch_to_wal(conn, path, started, mode)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def _switch_to_wal(conn: sqlite3.Connection, path: str, started: float, mode: str) -> None:
    while mode != "wal":
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
            waited_for = WAL_REFUSED_S  # an answer, not a lock: it will not change soon
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            mode, waited_for = "locked by another connection", WAL_SWITCH_TIMEOUT_S
        if mode == "wal":
            return
        if time.monotonic() - started > waited_for:
            raise StorageError(
                path, "switching the database to WAL", f"its journal mode stays {mode!r}",
                "durable needs WAL (a local file system with shared memory, and no other "
                "program holding the file in another journal mode); use another file.")
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
                if number == 0:  # a new database: durable's from its first transaction
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
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
