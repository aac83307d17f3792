"""sqlite3 errors as durable errors (durable.store.sqlite_errors)."""

from __future__ import annotations

import sqlite3

import pytest

from durable.errors import InvalidArgument, StorageError
from durable.store.sqlite_errors import mapped, storage


def error(cls: type[sqlite3.Error], text: str, code: int | None, name: str = "") -> sqlite3.Error:
    made = cls(text)
    if code is not None:
        made.sqlite_errorcode, made.sqlite_errorname = code, name  # type: ignore[attr-defined]
    return made


@pytest.mark.parametrize("raised, fix", [
    (error(sqlite3.OperationalError, "database or disk is full", 13, "SQLITE_FULL"),
     "Free disk space"),
    (error(sqlite3.OperationalError, "attempt to write a readonly database", 8,
           "SQLITE_READONLY"), "read-only"),
    (error(sqlite3.OperationalError, "disk I/O error", 778, "SQLITE_IOERR_WRITE"),
     "Check the disk"),
    (error(sqlite3.OperationalError, "database is locked", 5, "SQLITE_BUSY"), "write lock"),
    (error(sqlite3.OperationalError, "database is locked", None), "write lock"),
])
def test_storage_faults_are_storage_errors_with_their_fix(raised: sqlite3.Error,
                                                          fix: str) -> None:
    result = mapped("app.db", "recording events", raised)
    assert isinstance(result, StorageError)
    assert fix in str(result) and "app.db" in str(result) and "recording events" in str(result)


@pytest.mark.parametrize("raised", [
    UnicodeEncodeError("utf-8", "x\udc80", 1, 2, "surrogates not allowed"),
    sqlite3.InterfaceError("Error binding parameter 1: type 'bytes' is not supported"),
    sqlite3.IntegrityError("NOT NULL constraint failed: events.name"),
])
def test_values_that_cannot_be_stored_are_invalid_arguments(raised: BaseException) -> None:
    assert isinstance(mapped("app.db", "starting workflow 'x'", raised), InvalidArgument)


def test_no_raw_sqlite3_error_leaves_the_storage_block() -> None:
    with pytest.raises(StorageError) as raised, storage("app.db", "a read"):
        raise error(sqlite3.OperationalError, "database or disk is full", 13, "SQLITE_FULL")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
