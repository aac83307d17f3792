"""Fixtures of the dashboard tests: a client engine and a TestClient of its app.

Every test module here skips when the ``ui`` extra is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

import durable

if TYPE_CHECKING:
    from starlette.testclient import TestClient

TOKEN = "test-token"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(autouse=True)
def _attempts_forgotten() -> Iterator[None]:
    """The flaky step counts attempts per key in the process: each test (and each store's
    run of it) starts from none, so its first attempt fails again."""
    from tests.ui import flows

    flows.ATTEMPTS.clear()
    yield


@pytest.fixture
def client_engine(db: str) -> Iterator[durable.Engine]:
    """The dashboard's own engine: a client, as ``durable ui`` makes it."""
    with durable.Engine(db, workers=0) as engine:
        yield engine


def make_app(engine: durable.Engine, **options: Any) -> Any:
    from durable.ui.app import create_app

    return create_app(engine, TOKEN, **options)


def make_client(engine: durable.Engine, **options: Any) -> TestClient:
    """A client that opened the token link (so it holds the cookie)."""
    from starlette.testclient import TestClient

    client = TestClient(make_app(engine, **options), base_url=BASE)
    assert client.get(f"/?token={TOKEN}").status_code == 200
    return client


@pytest.fixture
def client(client_engine: durable.Engine) -> TestClient:
    return make_client(client_engine)
