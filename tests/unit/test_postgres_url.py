"""The URL of a PostgreSQL store: the schema is durable's, the password never shown."""

from __future__ import annotations

import pytest

from durable.errors import InvalidArgument
from durable.store.backend import is_url
from durable.store.postgres_schema import parse_url, tag, untag


def test_the_schema_parameter_is_taken_out_and_the_rest_kept_for_libpq() -> None:
    target = parse_url("postgresql://bob:secret@db.local:6432/app?schema=jobs&sslmode=require")
    assert target.schema == "jobs" and target.channel == "durable_jobs"
    assert "schema=" not in target.conninfo and "sslmode=require" in target.conninfo
    assert "connect_timeout=5" in target.conninfo  # never an unbounded wait to connect


def test_the_default_schema_is_durable_and_a_given_connect_timeout_is_kept() -> None:
    target = parse_url("postgres://bob@h/app?connect_timeout=2")
    assert target.schema == "durable"
    assert target.conninfo.count("connect_timeout") == 1 and "connect_timeout=2" in target.conninfo


def test_the_password_is_in_no_name_shown_in_messages() -> None:
    target = parse_url("postgresql://bob:secret@h/app?password=other&schema=s")
    assert "secret" not in target.shown and "other" not in target.shown
    assert "secret" not in target.label
    assert target.shown == "postgresql://bob@h/app?schema=s"


@pytest.mark.parametrize("schema", ["Upper", "a-b", "x;drop", "", "1abc"])
def test_a_schema_that_is_not_a_plain_lower_case_name_is_refused(schema: str) -> None:
    with pytest.raises(InvalidArgument, match="schema="):
        parse_url(f"postgresql://h/app?schema={schema}")


def test_urls_choose_postgres_and_paths_sqlite() -> None:
    assert is_url("postgresql://h/db") and is_url("postgres://h/db")
    assert not is_url("app.db") and not is_url("/tmp/postgresql.db")


@pytest.mark.parametrize("value", [None, "", "text é", b"", b"\x80\x04bytes"])
def test_payloads_read_back_with_their_exact_type(value: str | bytes | None) -> None:
    back = untag(tag(value))
    assert back == value and type(back) is type(value)


def test_pool_sizes_come_from_the_url_and_are_checked() -> None:
    target = parse_url("postgresql://h/app?pool_min=2&pool_max=3")
    assert (target.pool_min, target.pool_max) == (2, 3) and "pool" not in target.conninfo
    assert (parse_url("postgresql://h/app").pool_min, parse_url("postgresql://h/app").pool_max
            ) == (1, 8)
    with pytest.raises(InvalidArgument, match="pool_max"):
        parse_url("postgresql://h/app?pool_max=0")
    with pytest.raises(InvalidArgument, match="pool_min"):
        parse_url("postgresql://h/app?pool_min=4&pool_max=2")


def test_the_listener_may_take_a_direct_route_around_pgbouncer() -> None:
    target = parse_url("postgresql://app@bouncer:6432/db?listen_host=pg1&listen_port=5432")
    assert dict(target.listen) == {"host": "pg1", "port": "5432"}
    assert "listen" not in target.conninfo and "bouncer:6432" in target.conninfo
    assert parse_url("postgresql://app@pg1/db").listen == ()
