-- Durable background jobs and the transactional outbox: the same tables and columns as on SQLite
-- (migrations/sqlite/0004). Claims use FOR UPDATE SKIP LOCKED over jobs_claim; NOTIFY hearth_jobs
-- wakes the workers.
CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type             TEXT    NOT NULL,
    queue            TEXT    NOT NULL CHECK (queue IN ('high', 'default', 'low')),
    queue_rank       INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
    payload          TEXT    NOT NULL,
    result           TEXT,
    error            TEXT,
    progress         INTEGER NOT NULL DEFAULT 0,
    message          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           BIGINT  NOT NULL,
    lease_holder     TEXT,
    lease_expires_at BIGINT,
    idempotency_key  TEXT UNIQUE,
    created_by       BIGINT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX jobs_claim ON jobs (queue_rank, priority DESC, run_at, id)
    WHERE status IN ('queued', 'failed', 'running');
CREATE INDEX jobs_status  ON jobs (status, id);
CREATE INDEX jobs_type    ON jobs (type, id);
CREATE INDEX jobs_creator ON jobs (created_by, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE uploads (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT   NOT NULL,
    content    TEXT   NOT NULL,
    job_id     BIGINT,
    created_by BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE outbox_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel      TEXT   NOT NULL,
    type         TEXT   NOT NULL,
    data         TEXT   NOT NULL,
    owner_id     BIGINT,
    created_at   BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_unpublished ON outbox_events (id) WHERE published_at IS NULL;
CREATE INDEX outbox_channel ON outbox_events (channel, id);
