-- Accounts, sessions, login throttling, first-run setup, the security log and alerts.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('patient', 'clinician', 'admin')),
    password_hash TEXT NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    csrf_tag     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen_at);

CREATE TABLE login_failures (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    ip       TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX login_failures_by_username ON login_failures (username, at);
CREATE INDEX login_failures_by_ip ON login_failures (ip, at);

CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE TABLE security_events (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    username   TEXT,
    ip         TEXT,
    user_agent TEXT,
    referer    TEXT,
    method     TEXT,
    path       TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX security_events_by_kind_ip ON security_events (kind, ip, at);

CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only');
END;
CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
BEGIN
    SELECT RAISE(ABORT, 'security_events is append-only');
END;

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rule       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    detail     TEXT NOT NULL
);

-- One row per rule and subject: when it last raised an alert. Raising is an
-- atomic upsert on this row, so several servers raise one alert, not many.
CREATE TABLE alert_state (
    rule      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    PRIMARY KEY (rule, subject)
);
