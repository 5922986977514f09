-- A password an administrator chose for someone else is temporary: its
-- holder must choose their own at the first sign-in (safety file, H017).
-- Until then a signed-in session is at stage 'password' and can do nothing
-- but that.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE sessions DROP CONSTRAINT sessions_stage_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_stage_check
    CHECK (stage IN ('full', 'totp', 'enrol', 'password'));

-- Finding the newest seal of the access log (and any event of one kind)
-- without reading every event of that kind.
CREATE INDEX security_events_by_kind_seq ON security_events (kind, seq);
