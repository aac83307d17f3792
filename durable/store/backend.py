"""The store for a database name: PostgreSQL for a URL, else a SQLite file.

Apart from the protocol (:mod:`durable.store`) so that the backends, which import the
protocol's rows, are imported by nobody the protocol imports (no import cycle).
"""

from __future__ import annotations

from durable.store import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_url(db: str) -> bool:
    """True when ``db`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return db.startswith(POSTGRES_SCHEMES)


def open_store(db: str, synchronous: str = "full", preallocate: bool = True,
               read_only: bool = False) -> Store:
    """The store for ``db``: PostgreSQL for a ``postgresql://`` (or ``postgres://``) URL,
    else the SQLite file at that path. psycopg is imported only for a URL.

    ``synchronous`` and ``preallocate`` apply to SQLite; PostgreSQL commits as the
    server's ``synchronous_commit`` says. ``read_only`` opens either store for inspection:
    no migration, and every write raises StorageError.
    """
    if is_url(db):
        from durable.store.postgres import PostgresStore

        return PostgresStore(db, synchronous, read_only=read_only)
    from durable.store.sqlite import SQLiteStore

    return SQLiteStore(db, synchronous, preallocate=preallocate, read_only=read_only)
