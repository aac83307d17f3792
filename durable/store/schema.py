"""The SQLite schema, as numbered migrations.

``PRAGMA user_version`` holds the number of migrations applied. A later version of
durable appends a migration to :data:`MIGRATIONS`; it never edits an applied one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the event log, the workflow projection, the signal inbox, published events.
    """
    CREATE TABLE workflows (
        workflow_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        run INTEGER NOT NULL DEFAULT 1,
        input_encoding TEXT NOT NULL,
        input BLOB,
        output_encoding TEXT,
        output BLOB,
        error TEXT,
        owner TEXT,
        lease_until REAL,
        wake_at REAL,
        wait_signal TEXT,
        waiting TEXT,
        control TEXT,
        recoveries INTEGER NOT NULL DEFAULT 0,
        progress INTEGER NOT NULL DEFAULT 0,
        parent_id TEXT,
        deadline REAL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX workflows_wake ON workflows (wake_at) WHERE wake_at IS NOT NULL;
    CREATE INDEX workflows_status ON workflows (status, created);
    CREATE INDEX workflows_owner ON workflows (owner) WHERE owner IS NOT NULL;
    CREATE INDEX workflows_parent ON workflows (parent_id) WHERE parent_id IS NOT NULL;

    CREATE TABLE events (
        workflow_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        run INTEGER NOT NULL,
        call INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        args TEXT NOT NULL,
        encoding TEXT NOT NULL,
        payload BLOB,
        created REAL NOT NULL,
        PRIMARY KEY (workflow_id, position)
    ) WITHOUT ROWID;
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'durable events are append-only: UPDATE refused'); END;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'durable events are append-only: DELETE refused'); END;

    CREATE TABLE signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow_id TEXT NOT NULL,
        name TEXT NOT NULL,
        encoding TEXT NOT NULL,
        payload BLOB,
        sent REAL NOT NULL,
        consumed_position INTEGER
    );
    CREATE INDEX signals_pending ON signals (workflow_id, name, id)
        WHERE consumed_position IS NULL;

    CREATE TABLE published (
        workflow_id TEXT NOT NULL,
        key TEXT NOT NULL,
        encoding TEXT NOT NULL,
        payload BLOB,
        updated REAL NOT NULL,
        PRIMARY KEY (workflow_id, key)
    ) WITHOUT ROWID;
    """,
    # 2: the dashboard's workflow list, newest first, keyset-paginated on (created, id),
    # unfiltered and by name (by status: workflows_status); and the workflows that ended
    # by time, for the throughput chart: partial, so a row enters it once, when it ends,
    # and the writes of running workflows never touch it. Then the few workflows set aside
    # with an error (diverged, unknown), newest first, for the latest failures.
    """
    CREATE INDEX workflows_created ON workflows (created, workflow_id);
    CREATE INDEX workflows_name ON workflows (name, created, workflow_id);
    CREATE INDEX workflows_ended ON workflows (status, updated)
        WHERE status IN ('SUCCESS', 'FAILURE');
    CREATE INDEX workflows_set_aside ON workflows (updated) WHERE error IS NOT NULL;
    """,
    # 3: queues (queue, priority, dedup_id, start_at, dequeued), schedules, and the one
    # deletion the log allows: whole finished workflows named in `pruning` by durable prune.
    """
    ALTER TABLE workflows ADD COLUMN queue TEXT;
    ALTER TABLE workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workflows ADD COLUMN dedup_id TEXT;
    ALTER TABLE workflows ADD COLUMN start_at REAL;
    ALTER TABLE workflows ADD COLUMN dequeued REAL;
    CREATE INDEX workflows_queue_ready ON workflows (queue, priority, created)
        WHERE status = 'ENQUEUED';
    CREATE INDEX workflows_queue_active ON workflows (queue, status, owner)
        WHERE queue IS NOT NULL;
    CREATE INDEX workflows_queue_started ON workflows (queue, dequeued)
        WHERE queue IS NOT NULL;
    CREATE UNIQUE INDEX workflows_dedup ON workflows (queue, dedup_id)
        WHERE dedup_id IS NOT NULL
        AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED');

    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        missed TEXT NOT NULL,
        workflow TEXT NOT NULL,
        input_encoding TEXT NOT NULL,
        input BLOB,
        next_at REAL NOT NULL,
        declared INTEGER NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );

    CREATE TABLE pruning (workflow_id TEXT PRIMARY KEY);
    DROP TRIGGER events_append_only_delete;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    WHEN NOT EXISTS (
        SELECT 1 FROM pruning p JOIN workflows w ON w.workflow_id = p.workflow_id
        WHERE p.workflow_id = OLD.workflow_id
        AND w.status IN ('SUCCESS', 'FAILURE', 'CANCELLED', 'SKIPPED')
    )
    BEGIN
        SELECT RAISE(ABORT, 'durable events are append-only: DELETE refused (prune only)');
    END;
    """,
]
