-- Periodic jobs several servers share (scheduled backups): one row per job,
-- when a server last claimed it. Claiming is an atomic conditional upsert,
-- so of several servers due at once exactly one runs the job.
CREATE TABLE job_claims (
    job        TEXT PRIMARY KEY,
    claimed_at BIGINT NOT NULL
);
