-- Jobs without an idempotency key (almost all) need no entry in its unique index: every version of
-- a job row (queued, running, finished) inserted one, for a NULL.
ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key_key;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
