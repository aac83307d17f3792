"""sqlite3 errors as durable errors: no raw ``sqlite3`` error (nor the
``UnicodeEncodeError`` of an id with lone surrogates) leaves the SQLite store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from durable.errors import DurableError, InvalidArgument, StorageError

# sqlite3 result codes (the primary code is the low byte of the extended one).
_FULL, _READONLY, _IOERR, _BUSY, _LOCKED, _CORRUPT, _NOTADB = 13, 8, 10, 5, 6, 11, 26
_FIXES = {
    _FULL: "Free disk space (or raise the file size limit); the workflows are retried",
    _READONLY: "Make the file and its folder writable by this process, or open the "
               "database read-only for inspection (Engine(..., read_only=True))",
    _IOERR: "Check the disk and the file system the database lives on",
    _BUSY: "Another process held the database's write lock for too long; find it "
           "(fuser FILE) and let it finish",
    _LOCKED: "Another connection held a lock for too long; retry",
    _CORRUPT: "The file is damaged; restore it from a backup",
    _NOTADB: "The file is not a SQLite database; point durable at its own file",
}


def mapped(path: str, what: str, error: BaseException) -> DurableError:
    """The durable error for a failure of ``what`` on the database at ``path``."""
    if isinstance(error, UnicodeEncodeError):
        return InvalidArgument(
            f"{what}: a name or id cannot be stored: it is not valid text ({error.reason} "
            f"at index {error.start}, a lone surrogate); pass UTF-8 encodable str values")
    if isinstance(error, sqlite3.InterfaceError | sqlite3.ProgrammingError
                  | sqlite3.IntegrityError | sqlite3.DataError):
        return InvalidArgument(f"{what}: a value cannot be stored ({error}); names and ids "
                               "must be non-empty str values")
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary is None and isinstance(error, sqlite3.OperationalError):
        text = str(error)  # some errors come without a code: classify by their text
        primary = (_READONLY if "readonly" in text else _FULL if "full" in text
                   else _BUSY if "locked" in text else _IOERR if "I/O" in text else None)
    fix = _FIXES.get(primary or 0, "Check the database file and the disk")
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    return StorageError(path, what, f"{error} ({name})", fix + ".")


@contextmanager
def storage(path: str, what: str) -> Iterator[None]:
    """Raise every sqlite3 (or encoding) error inside as its durable error."""
    try:
        yield
    except (sqlite3.Error, UnicodeEncodeError) as error:
        raise mapped(path, what, error) from error
