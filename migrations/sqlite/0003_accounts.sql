-- Accounts, sessions and the audit log (the same tables on PostgreSQL, migrations/postgres/0002).
-- Emails are stored lower-case, so the unique index is case-insensitive in effect. A session is
-- one login: its refresh tokens form a family, rotated on every refresh; revoking the session
-- ends the family and every access token issued for it.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,          -- argon2id (libsodium's string form); '' never verifies
    full_name     TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('buyer', 'agent', 'admin')),
    status        TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    INTEGER NOT NULL,          -- unix microseconds
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_why TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    token_hash TEXT    NOT NULL UNIQUE,      -- SHA-256 of the token, hex
    created_at INTEGER NOT NULL,
    used_at    INTEGER                       -- set when rotated: presenting it again is reuse
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    actor_id      INTEGER,
    action        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT,
    ip            TEXT,
    request_id    TEXT,
    detail        TEXT                        -- JSON object
);
CREATE INDEX audit_log_actor    ON audit_log (actor_id, id);
CREATE INDEX audit_log_action   ON audit_log (action, id);
CREATE INDEX audit_log_resource ON audit_log (resource_type, resource_id, id);
CREATE INDEX audit_log_at       ON audit_log (at, id);

-- The owner of imported rows (hearth import, serve --demo): an agent that cannot log in.
INSERT INTO users (email, password_hash, full_name, role, status, created_at, updated_at)
VALUES ('system@hearth.local', '', 'System', 'agent', 'disabled',
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
        CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
UPDATE properties SET owner_id = (SELECT id FROM users WHERE email = 'system@hearth.local') WHERE owner_id IS NULL;
