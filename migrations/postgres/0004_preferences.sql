-- Preference sessions: the same table and columns as on SQLite (migrations/sqlite/0005).
CREATE TABLE preference_sessions (
    id          TEXT   PRIMARY KEY,
    preferences TEXT   NOT NULL,
    user_id     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX preference_sessions_user ON preference_sessions (user_id, created_at) WHERE user_id IS NOT NULL;
