-- Durable background jobs and the transactional outbox (the same tables on PostgreSQL,
-- migrations/postgres/0003). A job is claimed by setting its lease; a worker that dies leaves a
-- lease that expires, and the job is claimed again. `failed` is a failed attempt waiting for its
-- retry at run_at; `dead` has used up max_attempts. Times are unix microseconds.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    type             TEXT    NOT NULL,
    queue            TEXT    NOT NULL CHECK (queue IN ('high', 'default', 'low')),
    queue_rank       INTEGER NOT NULL,            -- 0 high, 1 default, 2 low: the claim order
    priority         INTEGER NOT NULL DEFAULT 0,  -- higher first within a queue
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
    payload          TEXT    NOT NULL,            -- JSON object
    result           TEXT,                        -- JSON value
    error            TEXT,
    progress         INTEGER NOT NULL DEFAULT 0,
    message          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    lease_holder     TEXT,
    lease_expires_at INTEGER,
    idempotency_key  TEXT UNIQUE,
    created_by       INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
-- what a claim walks: live jobs in claim order
CREATE INDEX jobs_claim ON jobs (queue_rank, priority DESC, run_at, id)
    WHERE status IN ('queued', 'failed', 'running');
CREATE INDEX jobs_status  ON jobs (status, id);
CREATE INDEX jobs_type    ON jobs (type, id);
CREATE INDEX jobs_creator ON jobs (created_by, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Files uploaded for a job (POST /api/imports), kept in the database so that a worker on another
-- host can read them; deleted with their job when jobs are pruned.
CREATE TABLE uploads (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    content    TEXT    NOT NULL,   -- UTF-8 text (CSV or JSON)
    job_id     INTEGER,            -- the job that reads it; pruned with it
    created_by INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE outbox_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- the event id consumers drop duplicates by
    channel      TEXT    NOT NULL,                   -- property:ID, job:ID, jobs
    type         TEXT    NOT NULL,
    data         TEXT    NOT NULL,                   -- JSON object
    owner_id     INTEGER,                            -- who may see it besides admins (NULL: everyone)
    created_at   INTEGER NOT NULL,
    published_at INTEGER
);
CREATE INDEX outbox_unpublished ON outbox_events (id) WHERE published_at IS NULL;
CREATE INDEX outbox_channel ON outbox_events (channel, id);
