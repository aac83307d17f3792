"""The PostgreSQL schema as numbered migrations, the URL of a store, and its connections.

Tables and columns mean what they mean on SQLite (:mod:`durable.store.schema`), with
one difference: a payload column (``input``, ``output``, ``payload``) is ``bytea`` whose
first byte says what the value was, ``t`` text (UTF-8 follows) or ``b`` bytes, so that
each value reads back with its exact type (see :func:`tag` and :func:`untag`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from durable.errors import DurableError, InvalidArgument, StorageError

#: Seconds to wait for the server to answer a connection attempt.
CONNECT_TIMEOUT = 5
#: TCP keepalives: a half-open connection (a server that vanished without a FIN) is
#: noticed in about idle + interval * count seconds instead of never.
KEEPALIVES = "keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Each migration is a list of statements; {s} is the quoted schema name. A later version
# of durable appends a migration; it never edits an applied one.
MIGRATIONS: list[list[str]] = [
    # 1: the event log, the workflow projection, the signal inbox, published events.
    [
        """CREATE TABLE {s}.workflows (
            workflow_id text PRIMARY KEY,
            name text NOT NULL,
            status text NOT NULL,
            run integer NOT NULL DEFAULT 1,
            input_encoding text NOT NULL,
            input bytea,
            output_encoding text,
            output bytea,
            error text,
            owner text,
            lease_until double precision,
            wake_at double precision,
            wait_signal text,
            waiting text,
            control text,
            recoveries integer NOT NULL DEFAULT 0,
            progress integer NOT NULL DEFAULT 0,
            parent_id text,
            deadline double precision,
            created double precision NOT NULL,
            updated double precision NOT NULL
        )""",
        "CREATE INDEX workflows_wake ON {s}.workflows (wake_at) WHERE wake_at IS NOT NULL",
        "CREATE INDEX workflows_status ON {s}.workflows (status, created)",
        "CREATE INDEX workflows_owner ON {s}.workflows (owner) WHERE owner IS NOT NULL",
        "CREATE INDEX workflows_parent ON {s}.workflows (parent_id) WHERE parent_id IS NOT NULL",
        """CREATE TABLE {s}.events (
            workflow_id text NOT NULL,
            position integer NOT NULL,
            run integer NOT NULL,
            call integer NOT NULL,
            kind text NOT NULL,
            name text NOT NULL,
            digest text NOT NULL,
            args text NOT NULL,
            encoding text NOT NULL,
            payload bytea,
            created double precision NOT NULL,
            PRIMARY KEY (workflow_id, position)
        )""",
        """CREATE FUNCTION {s}.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'durable events are append-only: % refused', TG_OP;
        END $$""",
        "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events "
        "FOR EACH ROW EXECUTE FUNCTION {s}.events_append_only()",
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events "
        "FOR EACH STATEMENT EXECUTE FUNCTION {s}.events_append_only()",
        """CREATE TABLE {s}.signals (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            workflow_id text NOT NULL,
            name text NOT NULL,
            encoding text NOT NULL,
            payload bytea,
            sent double precision NOT NULL,
            consumed_position integer
        )""",
        "CREATE INDEX signals_pending ON {s}.signals (workflow_id, name, id) "
        "WHERE consumed_position IS NULL",
        "CREATE INDEX signals_workflow ON {s}.signals (workflow_id, id)",
        """CREATE TABLE {s}.published (
            workflow_id text NOT NULL,
            key text NOT NULL,
            encoding text NOT NULL,
            payload bytea,
            updated double precision NOT NULL,
            PRIMARY KEY (workflow_id, key)
        )""",
    ],
    # 2: the dashboard's workflow list, newest first, keyset-paginated on (created, id),
    # unfiltered and by name; the workflows that ended, by time (throughput); the few set
    # aside with an error, newest first (latest failures). As SQLite's migration 2.
    [
        "CREATE INDEX workflows_created ON {s}.workflows (created, workflow_id)",
        "CREATE INDEX workflows_name ON {s}.workflows (name, created, workflow_id)",
        "CREATE INDEX workflows_ended ON {s}.workflows (status, updated) "
        "WHERE status IN ('SUCCESS', 'FAILURE')",
        "CREATE INDEX workflows_set_aside ON {s}.workflows (updated) WHERE error IS NOT NULL",
    ],
    # 3: queues (queue, priority, dedup_id, start_at, dequeued), schedules, and the one
    # deletion the log allows: whole finished workflows named in `pruning` by durable prune.
    [
        "ALTER TABLE {s}.workflows ADD COLUMN queue text, "
        "ADD COLUMN priority integer NOT NULL DEFAULT 0, ADD COLUMN dedup_id text, "
        "ADD COLUMN start_at double precision, ADD COLUMN dequeued double precision",
        "CREATE INDEX workflows_queue_ready ON {s}.workflows (queue, priority, created) "
        "WHERE status = 'ENQUEUED'",
        "CREATE INDEX workflows_queue_active ON {s}.workflows (queue, status, owner) "
        "WHERE queue IS NOT NULL",
        "CREATE INDEX workflows_queue_started ON {s}.workflows (queue, dequeued) "
        "WHERE queue IS NOT NULL",
        "CREATE UNIQUE INDEX workflows_dedup ON {s}.workflows (queue, dedup_id) "
        "WHERE dedup_id IS NOT NULL "
        "AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')",
        """CREATE TABLE {s}.schedules (
            name text PRIMARY KEY,
            cron text NOT NULL,
            timezone text NOT NULL,
            missed text NOT NULL,
            workflow text NOT NULL,
            input_encoding text NOT NULL,
            input bytea,
            next_at double precision NOT NULL,
            declared boolean NOT NULL,
            created double precision NOT NULL,
            updated double precision NOT NULL
        )""",
        "CREATE TABLE {s}.pruning (workflow_id text PRIMARY KEY)",
        # A row's DELETE passes only for a finished workflow named in `pruning`; UPDATE
        # and TRUNCATE are still refused.
        """CREATE OR REPLACE FUNCTION {s}.events_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                IF EXISTS (SELECT 1 FROM {s}.pruning p
                           JOIN {s}.workflows w ON w.workflow_id = p.workflow_id
                           WHERE p.workflow_id = OLD.workflow_id
                           AND w.status IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED'))
                THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'durable events are append-only: DELETE refused (prune only)';
            END IF;
            RAISE EXCEPTION 'durable events are append-only: % refused', TG_OP;
        END $$""",
    ],
]


def tag(value: str | bytes | None) -> bytes | None:
    """A payload as stored: one byte for its type, then its bytes."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return b"b" + value
    return b"t" + value.encode()


def untag(stored: bytes | None) -> str | bytes | None:
    """A payload as written (see :func:`tag`)."""
    if stored is None:
        return None
    data = bytes(stored)
    return data[1:].decode() if data[:1] == b"t" else data[1:]


@dataclass(frozen=True)
class Target:
    """Where a PostgreSQL store lives: libpq conninfo, schema, and a name for messages."""

    conninfo: str
    schema: str
    label: str
    #: The URL without its password: what the store shows as its ``path``.
    shown: str
    pool_min: int = 1
    pool_max: int = 8
    #: libpq options of the LISTEN connection only (``listen_host``, ``listen_port``):
    #: a direct route to PostgreSQL when the URL goes through PgBouncer.
    listen: tuple[tuple[str, str], ...] = ()

    @property
    def quoted(self) -> str:
        return f'"{self.schema}"'

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema: engines on other schemas stay quiet."""
        return f"durable_{self.schema}"


def parse_url(url: str) -> Target:
    """Split ``postgresql://...?schema=name&pool_min=1&pool_max=8&listen_host=h&listen_port=p``
    into conninfo, schema (default ``durable``), the pool's sizes and where the LISTEN
    connection goes (default: the URL's host and port); the other query parameters are
    libpq's and are kept."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = "durable"
    pool = {"pool_min": 1, "pool_max": 8}
    kept: list[tuple[str, str]] = []
    listen: list[tuple[str, str]] = []
    for key, value in query:
        if key == "schema":
            schema = value
        elif key in ("listen_host", "listen_port"):
            listen.append((key.removeprefix("listen_"), value))
        elif key in pool:
            if not value.isdigit() or int(value) < 1:
                raise InvalidArgument(
                    f"{key}={value!r} in the database URL is not a whole number >= 1; "
                    "e.g. ?pool_max=4")
            pool[key] = int(value)
        else:
            kept.append((key, value))
    if pool["pool_min"] > pool["pool_max"]:
        raise InvalidArgument(
            f"pool_min={pool['pool_min']} is more than pool_max={pool['pool_max']} in the "
            "database URL; make pool_min <= pool_max")
    if not _IDENTIFIER.match(schema):
        raise InvalidArgument(
            f"schema={schema!r} in the database URL is not a plain lower-case SQL name; "
            "use letters, digits and underscores, e.g. ?schema=durable_app"
        )
    if not any(key == "connect_timeout" for key, _ in kept):
        kept.append(("connect_timeout", str(CONNECT_TIMEOUT)))
    conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    shown = f"{parts.scheme}://{user + '@' if user else ''}{netloc[2]}{parts.path}"
    public = [(k, v) for k, v in query if k not in ("password", "listen_host", "listen_port")]
    return Target(conninfo, schema, f"{shown} (schema {schema})",
                  urlunsplit(parts._replace(netloc=f"{user + '@' if user else ''}{netloc[2]}",
                                            query=urlencode(public))),
                  pool["pool_min"], pool["pool_max"], tuple(listen))


#: What to do about a failure to reach or use the server (the fix of each StorageError).
FIX = ("Check that the PostgreSQL server runs and is reachable from here (host, port, "
       "credentials, max_connections); durable reconnects by itself, so retry the call "
       "once the server answers.")


def storage_error(label: str, operation: str, reason: str) -> StorageError:
    """The StorageError of one failed operation on a PostgreSQL store."""
    return StorageError(label, operation, reason, FIX)


def mapped(label: str, what: str, error: BaseException) -> DurableError:
    """The durable error of a failed ``what``: InvalidArgument for a value that cannot be
    stored (not valid text, a NUL character, a constraint), else a StorageError."""
    if isinstance(error, UnicodeEncodeError):
        return InvalidArgument(
            f"{what}: a name or id cannot be stored: it is not valid text ({error.reason} "
            f"at index {error.start}, a lone surrogate); pass UTF-8 encodable str values")
    if isinstance(error, psycopg.DataError | psycopg.IntegrityError):
        return InvalidArgument(f"{what}: a value cannot be stored ({_reason(error)}); names "
                               "and ids must be non-empty str values without NUL characters")
    return storage_error(label, what, _reason(error))


def connect(target: Target, operation: str, **options: Any) -> psycopg.Connection[Any]:
    """A new direct connection, or a StorageError within the connect timeout."""
    try:
        return psycopg.connect(target.conninfo, **options)
    except psycopg.Error as error:
        raise storage_error(target.label, operation, _reason(error)) from error


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def migrate(target: Target, check_only: bool = False) -> None:
    """Create the schema or bring it up to date, exactly once however many processes
    start together: the migrations run under a transaction-scoped advisory lock.
    ``check_only`` (a read-only store): change nothing, and refuse a schema that is not
    up to date."""
    s = target.quoted
    with connect(target, "opening the database", autocommit=True) as conn:
        try:
            version = _version(conn, target)
            if version == len(MIGRATIONS):
                return  # the common case: no lock at all
            if check_only:
                raise storage_error(
                    target.label, "opening the database read-only",
                    f"schema {target.schema!r} holds no durable tables" if version == 0 else
                    f"its schema version {version} is not this durable's "
                    f"({len(MIGRATIONS)}); open it once without read_only to migrate it")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                             (f"durable migrations {target.schema}",))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                if _has_table(conn, target.schema, "workflows") and not _has_table(
                        conn, target.schema, "migrations"):
                    raise storage_error(
                        target.label, "opening the database",
                        f"schema {target.schema!r} holds a workflows table of another "
                        "program; choose another schema with ?schema=name")
                conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.migrations ("
                             "number integer PRIMARY KEY, applied timestamptz NOT NULL "
                             "DEFAULT now(), backend integer NOT NULL DEFAULT pg_backend_pid())")
                version = _version(conn, target)
                if version > len(MIGRATIONS):
                    raise storage_error(
                        target.label, "opening the database",
                        f"its schema version {version} is newer than this durable's "
                        f"({len(MIGRATIONS)}); upgrade durable")
                for number in range(version, len(MIGRATIONS)):
                    for statement in MIGRATIONS[number]:
                        conn.execute(statement.replace("{s}", s).encode())
                    conn.execute(f"INSERT INTO {s}.migrations (number) VALUES (%s)",
                                 (number + 1,))
        except psycopg.Error as error:
            raise storage_error(target.label, "migrating the schema", _reason(error)) from error


def _has_table(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{table}',)).fetchone()
    return row is not None and row[0] is not None


def _version(conn: psycopg.Connection[Any], target: Target) -> int:
    if not _has_table(conn, target.schema, "migrations"):
        return 0
    row = conn.execute(f"SELECT COALESCE(MAX(number), 0) FROM {target.quoted}.migrations"
                       ).fetchone()
    return int(row[0]) if row else 0
