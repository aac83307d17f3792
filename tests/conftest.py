"""Shared fixtures: a fresh database per test (a SQLite file, and a PostgreSQL schema),
and an engine on it.

Every test that takes ``db`` (or ``engine``) runs on both stores. A test about SQLite
files (WAL, file modes, sqlite3 connections) is marked ``@pytest.mark.sqlite_only``;
a test only PostgreSQL has takes ``pg_url``. The PostgreSQL server is found through
``$DURABLE_TEST_POSTGRES`` (default below); without one, these tests FAIL, never skip.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import durable

POSTGRES = os.environ.get("DURABLE_TEST_POSTGRES",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``sqlite_only`` test runs on SQLite alone: its PostgreSQL variant is dropped."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        store = params.params.get("db") if params is not None else None
        if store == "postgres" and item.get_closest_marker("sqlite_only"):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _registry_restored() -> Iterator[None]:
    """Workflows and steps defined inside a test are forgotten after it: the same test
    runs once per store, and its second run must be able to define them again."""
    from durable.runtime.registry import STEPS, WORKFLOWS

    saved = dict(WORKFLOWS), dict(STEPS)
    yield
    for table, before in zip((WORKFLOWS, STEPS), saved, strict=True):
        for name, entry in list(table.items()):
            defined_in_test = "<locals>" in getattr(entry.fn, "__qualname__", "")
            if defined_in_test and before.get(name) is not entry:
                if name in before:
                    table[name] = before[name]
                else:
                    del table[name]


def _admin() -> object:
    import psycopg

    try:
        return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        pytest.fail(
            f"the PostgreSQL tests need a server at {POSTGRES} "
            f"($DURABLE_TEST_POSTGRES), which does not answer: {error}. Start it "
            "(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) "
            "or point $DURABLE_TEST_POSTGRES at one.", pytrace=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of a fresh PostgreSQL schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _admin().close()  # type: ignore[attr-defined]  # fails the test at once without a server
    separator = "&" if "?" in POSTGRES else "?"
    try:
        yield f"{POSTGRES}{separator}schema={schema}"
    finally:  # a new connection: the test may have restarted the server
        admin = _admin()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "test.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def is_postgres(db: str) -> bool:
    return db.startswith("postgresql://")


@pytest.fixture
def engine(db: str) -> Iterator[durable.Engine]:
    with durable.Engine(db, workers=4, synchronous="normal", poll_interval=0.01) as engine:
        yield engine


def execute_sql(
    db: str, statement: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    """Run one SQL statement on a test database of either store (``?`` placeholders), as
    another program would: for tests that look at or tamper with the tables."""
    if not db.startswith("postgresql://"):
        import sqlite3

        conn = sqlite3.connect(db, isolation_level=None)
        try:
            return conn.execute(statement, params).fetchall()
        finally:
            conn.close()
    import psycopg

    url, _, schema = db.partition("?schema=")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cursor = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
