-- Two-factor sign-in. TOTP secrets are stored only sealed by the keyring
-- (`vlm1.<key-id>.<…>`), never as plaintext; recovery codes only as MACs.

ALTER TABLE users ADD COLUMN totp_secret TEXT CHECK (totp_secret IS NULL OR totp_secret LIKE 'vlm1.%');
ALTER TABLE users ADD COLUMN totp_pending TEXT CHECK (totp_pending IS NULL OR totp_pending LIKE 'vlm1.%');
-- The last accepted time step: a code for it or any earlier step is refused.
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;

CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- 'full', or a partial session after the password: 'totp' (waiting for a
-- code) or 'enrol' (must set up two-factor sign-in first).
ALTER TABLE sessions ADD COLUMN stage TEXT NOT NULL DEFAULT 'full' CHECK (stage IN ('full', 'totp', 'enrol'));
