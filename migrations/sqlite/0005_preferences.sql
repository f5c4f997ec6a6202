-- Preference sessions (POST /api/preferences; the same table on PostgreSQL,
-- migrations/postgres/0004). A session is a buyer's stated preferences, kept under a random,
-- unguessable id (32 hex digits) that GET /api/recommendations?session_id= reads back.
-- `preferences` is their canonical JSON (src/domain/recommend.c); `user_id` is the account that
-- created it when a token came with the request (only that user and admins may then use it), NULL
-- for an anonymous session. Times are unix microseconds.
CREATE TABLE preference_sessions (
    id          TEXT    PRIMARY KEY,
    preferences TEXT    NOT NULL,
    user_id     INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX preference_sessions_user ON preference_sessions (user_id, created_at) WHERE user_id IS NOT NULL;
