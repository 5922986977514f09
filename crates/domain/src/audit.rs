//! Security events (an append-only, hash-chained log) and alerts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ParseError, Timestamp, UserId};

/// What happened. Stored by name; the names are part of the log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityEventKind {
    LoginSucceeded,
    LoginFailed,
    LoginRateLimited,
    Logout,
    PasswordChanged,
    PasswordReset,
    UserCreated,
    UserDeactivated,
    RoleChanged,
    SetupLinkIssued,
    SetupCompleted,
    CsrfFailure,
    AlertRaised,
    PatientLinked,
    ApiTokenCreated,
    ApiTokenRevoked,
    TotpEnabled,
    TotpDisabled,
    TotpReset,
    AccessLogSealed,
    TotpFailed,
    TotpReplayRefused,
    RecoveryCodeUsed,
    RecoveryCodesReplaced,
    KeyRotated,
    KeysRewrapped,
    KeyRetired,
    BackupCreated,
    BackupFailed,
    BackupRestored,
}

impl SecurityEventKind {
    pub const ALL: [SecurityEventKind; 30] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoginRateLimited,
        Self::Logout,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::UserCreated,
        Self::UserDeactivated,
        Self::RoleChanged,
        Self::SetupLinkIssued,
        Self::SetupCompleted,
        Self::CsrfFailure,
        Self::AlertRaised,
        Self::PatientLinked,
        Self::ApiTokenCreated,
        Self::ApiTokenRevoked,
        Self::TotpEnabled,
        Self::TotpDisabled,
        Self::TotpReset,
        Self::AccessLogSealed,
        Self::TotpFailed,
        Self::TotpReplayRefused,
        Self::RecoveryCodeUsed,
        Self::RecoveryCodesReplaced,
        Self::KeyRotated,
        Self::KeysRewrapped,
        Self::KeyRetired,
        Self::BackupCreated,
        Self::BackupFailed,
        Self::BackupRestored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginRateLimited => "login_rate_limited",
            Self::Logout => "logout",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::UserCreated => "user_created",
            Self::UserDeactivated => "user_deactivated",
            Self::RoleChanged => "role_changed",
            Self::SetupLinkIssued => "setup_link_issued",
            Self::SetupCompleted => "setup_completed",
            Self::CsrfFailure => "csrf_failure",
            Self::AlertRaised => "alert_raised",
            Self::PatientLinked => "patient_linked",
            Self::ApiTokenCreated => "api_token_created",
            Self::ApiTokenRevoked => "api_token_revoked",
            Self::TotpEnabled => "totp_enabled",
            Self::TotpDisabled => "totp_disabled",
            Self::TotpReset => "totp_reset",
            Self::AccessLogSealed => "access_log_sealed",
            Self::TotpFailed => "totp_failed",
            Self::TotpReplayRefused => "totp_replay_refused",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::RecoveryCodesReplaced => "recovery_codes_replaced",
            Self::KeyRotated => "key_rotated",
            Self::KeysRewrapped => "keys_rewrapped",
            Self::KeyRetired => "key_retired",
            Self::BackupCreated => "backup_created",
            Self::BackupFailed => "backup_failed",
            Self::BackupRestored => "backup_restored",
        }
    }
}

impl fmt::Display for SecurityEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityEventKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseError::new("kind", format!("unknown security event kind {s:?}")))
    }
}

/// An event about to be appended. The store gives it a sequence number, a
/// time and its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewSecurityEvent {
    pub kind: Option<SecurityEventKind>,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// Further facts as a JSON object, kept as text so it hashes as stored.
    pub detail: String,
}

impl NewSecurityEvent {
    pub fn new(kind: SecurityEventKind) -> Self {
        Self {
            kind: Some(kind),
            detail: "{}".to_owned(),
            ..Self::default()
        }
    }

    pub fn user(mut self, id: UserId, username: &str) -> Self {
        self.user_id = Some(id);
        self.username = Some(username.to_owned());
        self
    }

    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(username.to_owned());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail.to_string();
        self
    }
}

/// One row of the security log as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityEvent {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields a row's hash covers, in a fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: i64,
    kind: &'a str,
    user_id: Option<&'a str>,
    username: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    referer: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    detail: &'a str,
    prev_hash: &'a str,
}

impl SecurityEvent {
    /// The hash of the row before the first one.
    pub const GENESIS: &'static str =
        "0000000000000000000000000000000000000000000000000000000000000000";

    /// The bytes this row's hash is computed over: every field but the hash,
    /// including the previous row's hash, so no row can change or vanish
    /// without breaking every later one.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let c = Canonical {
            seq: self.seq,
            at: self.at.millis(),
            kind: &self.kind,
            user_id: self.user_id.as_deref(),
            username: self.username.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            referer: self.referer.as_deref(),
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            detail: &self.detail,
            prev_hash: &self.prev_hash,
        };
        serde_json::to_vec(&c).unwrap_or_default()
    }
}

/// Computes a row's hash from its canonical bytes (the crypto crate's SHA-256
/// in production); the store calls it while it holds the log's write lock.
pub trait ChainHasher: Send + Sync {
    fn hash(&self, canonical: &[u8]) -> String;
}

/// A raised alert: one per rule and subject while the condition lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub id: i64,
    pub rule: String,
    pub subject: String,
    pub created_at: Timestamp,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_round_trip_through_their_names() {
        for kind in SecurityEventKind::ALL {
            assert_eq!(kind.as_str().parse::<SecurityEventKind>(), Ok(kind));
        }
    }

    #[test]
    fn canonical_bytes_cover_the_previous_hash() {
        let mut e = SecurityEvent {
            seq: 1,
            at: Timestamp(5),
            kind: "logout".into(),
            user_id: None,
            username: Some("alice".into()),
            ip: None,
            user_agent: None,
            referer: None,
            method: None,
            path: None,
            detail: "{}".into(),
            prev_hash: SecurityEvent::GENESIS.into(),
            hash: String::new(),
        };
        let a = e.canonical_bytes();
        e.prev_hash = "ff".into();
        assert_ne!(a, e.canonical_bytes());
    }
}
