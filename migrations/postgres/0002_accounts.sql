-- Accounts, sessions and the audit log: the same tables and columns as on SQLite
-- (migrations/sqlite/0003), times as unix microseconds.
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    full_name     TEXT   NOT NULL,
    role          TEXT   NOT NULL CHECK (role IN ('buyer', 'agent', 'admin')),
    status        TEXT   NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    revoked_why TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES sessions (id),
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE audit_log (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor_id      BIGINT,
    action        TEXT   NOT NULL,
    resource_type TEXT   NOT NULL,
    resource_id   TEXT,
    ip            TEXT,
    request_id    TEXT,
    detail        TEXT
);
CREATE INDEX audit_log_actor    ON audit_log (actor_id, id);
CREATE INDEX audit_log_action   ON audit_log (action, id);
CREATE INDEX audit_log_resource ON audit_log (resource_type, resource_id, id);
CREATE INDEX audit_log_at       ON audit_log (at, id);

INSERT INTO users (email, password_hash, full_name, role, status, created_at, updated_at)
VALUES ('system@hearth.local', '', 'System', 'agent', 'disabled',
        (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
        (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
UPDATE properties SET owner_id = (SELECT id FROM users WHERE email = 'system@hearth.local') WHERE owner_id IS NULL;
