-- A password an administrator chose for someone else is temporary: its
-- holder must choose their own at the first sign-in (safety file, H017).
-- Until then a signed-in session is at stage 'password' and can do nothing
-- but that. SQLite cannot change a column's CHECK, so the sessions table is
-- rebuilt with 'password' among the stages; every session is kept.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT 0;

CREATE TABLE sessions_0009 (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    csrf_tag     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    stage        TEXT NOT NULL DEFAULT 'full'
                 CHECK (stage IN ('full', 'totp', 'enrol', 'password'))
);
INSERT INTO sessions_0009 (token_hash, user_id, csrf_tag, created_at, last_seen_at, stage)
SELECT token_hash, user_id, csrf_tag, created_at, last_seen_at, stage FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_0009 RENAME TO sessions;
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen_at);

-- Finding the newest seal of the access log (and any event of one kind)
-- without reading every event of that kind.
CREATE INDEX security_events_by_kind_seq ON security_events (kind, seq);
