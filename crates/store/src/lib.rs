//! Persistence behind one trait, with a SQLite and a PostgreSQL implementation.
//!
//! The store keeps rows and enforces the integrity rules a database is good
//! at (uniqueness, atomicity, the security log's write lock). It holds no
//! keys and makes no decisions: the `app` crate decides, the store records.
//! Every write takes the security events that describe it and commits them
//! in the same transaction.

mod backup;
mod clinical;
mod error;
mod group;
mod inspect;
mod postgres;
mod postgres_kept;
mod records;
mod sql;
mod sql_clinical;
mod sqlite;
mod sqlite_inline;
mod totp;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{
    Alert, ChainHasher, NewSecurityEvent, SecurityEvent, SecurityEventKind, Timestamp, User,
    UserId, Username,
};

pub use backup::{
    BACKUP_TABLES, BackupStore, ColumnType, ExportItem, ImportItem, TableSpec, Value, backup_table,
    latest_schema_version,
};
pub use clinical::{
    AccessEntry, AccessRow, ApiTokenRow, ClinicalStore, Cmp, DuplicateCheck, LetterRow,
    LetterWrite, PatientRow, PatientSearch, PatientVersionRow, PatientWrite,
};
pub use error::StoreError;
pub use inspect::{SchemaState, inspect};
pub use postgres::{PATIENT_REGISTRATION_LOCK, PostgresStore, SECURITY_LOG_LOCK};
pub use records::{
    ChangedBy, FailureWindow, NewUserRecord, SecondFactor, SessionRecord, SessionStage, UserRecord,
};
pub use sqlite::{SqliteStore, sqlite_file};
pub use totp::{SEALED_COLUMNS, SealedValue, TotpState, TotpStore};

pub type Result<T> = std::result::Result<T, StoreError>;

/// How to reach the database.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// Hashes security-log rows (SHA-256 from the crypto crate).
    pub chain: Arc<dyn ChainHasher>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// A database URL with any password replaced by `***`, safe to print.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Connects to the database the URL names and applies pending migrations.
pub async fn open(options: ConnectOptions) -> Result<Arc<dyn Store>> {
    match Backend::of(&options.url) {
        Some(Backend::Sqlite) => Ok(Arc::new(SqliteStore::connect(options).await?)),
        Some(Backend::Postgres) => Ok(Arc::new(PostgresStore::connect(options).await?)),
        None => Err(StoreError::Config(
            "database URL must start with sqlite:// or postgres://".to_owned(),
        )),
    }
}

/// Everything Vellum keeps. Both backends implement it from the same SQL.
#[async_trait]
pub trait Store: ClinicalStore + TotpStore + BackupStore + Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Answers when the database can run a query.
    async fn ping(&self) -> Result<()>;

    /// Closes every connection; later calls fail. For shutdown.
    async fn close(&self);

    // --- users -------------------------------------------------------------

    async fn count_users(&self) -> Result<i64>;
    /// `Conflict` when the username is taken.
    /// `Forbidden` (nothing written) when `by` is an administrator no
    /// longer active as one.
    async fn create_user(
        &self,
        user: &NewUserRecord,
        by: ChangedBy,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<User>;
    async fn user_by_username(&self, username: &Username) -> Result<Option<UserRecord>>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>>;
    /// Sets a new password hash (the holder's own: no longer one to
    /// change) and ends every session of the user except `keep_session` (a
    /// token hash) — or, with `upgrade`, except `upgrade`, which takes
    /// `keep_session`'s place in the same transaction (`SessionEnded`, with
    /// nothing written, when `keep_session` has ended meanwhile).
    async fn set_password(
        &self,
        id: UserId,
        password_hash: &str,
        keep_session: Option<&str>,
        upgrade: Option<&SessionRecord>,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    /// An administrator's new, temporary password for an account (a
    /// forgotten one): the hash set, the holder to choose their own at the
    /// next sign-in, every session of the account ended, the events
    /// recorded — one transaction. `NotFound` when there is no such user;
    /// `Forbidden` as [`Store::create_user`].
    async fn reset_password(
        &self,
        id: UserId,
        password_hash: &str,
        by: ChangedBy,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    /// Gives an account another role, in one transaction with the events:
    /// every session of the account ends and every API token of it is
    /// revoked, so nothing granted under the old role outlives it.
    /// `NotFound` when there is no such account; `Forbidden` when `by` is
    /// no longer an active administrator; `Conflict` when it would leave no
    /// active administrator.
    async fn set_user_role(
        &self,
        id: UserId,
        role: domain::Role,
        by: ChangedBy,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    /// Activates or deactivates an account; deactivation ends its sessions.
    /// Refused as [`Store::set_user_role`] is.
    async fn set_user_active(
        &self,
        id: UserId,
        active: bool,
        by: ChangedBy,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;

    // --- sessions ----------------------------------------------------------

    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;
    /// The session a token hash names, with its user (read in one query);
    /// the user is `None` for a pre-login session or a user that is gone.
    async fn session(&self, token_hash: &str) -> Result<Option<(SessionRecord, Option<User>)>>;
    async fn touch_session(&self, token_hash: &str, at: Timestamp) -> Result<()>;
    async fn set_session_csrf(&self, token_hash: &str, csrf_tag: &str) -> Result<()>;
    /// A successful login: replaces the pre-login session (if any) with the
    /// new one, clears the account's failure count and records the events —
    /// and spends the second factor that completed it, if one did, in the
    /// same transaction, so a code is never spent without its session nor a
    /// session started on a code spent already. `false` when that factor
    /// was spent already (a replay; a recovery code used or never issued;
    /// two-factor sign-in turned off meanwhile) or the session it completes
    /// (`replaces`) has ended: then nothing is written.
    async fn start_session(
        &self,
        replaces: Option<&str>,
        session: &SessionRecord,
        username: &Username,
        spends: Option<SecondFactor<'_>>,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<bool>;
    async fn end_session(
        &self,
        token_hash: &str,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    /// Ends every session of the user except `keep_session`; returns how many.
    async fn end_user_sessions(
        &self,
        id: UserId,
        keep_session: Option<&str>,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<u64>;
    /// Deletes sessions idle since before `idle_cutoff` or created before
    /// `absolute_cutoff`.
    async fn purge_sessions(
        &self,
        idle_cutoff: Timestamp,
        absolute_cutoff: Timestamp,
    ) -> Result<u64>;

    // --- login throttling -------------------------------------------------

    async fn record_login_failure(
        &self,
        username: &str,
        ip: &str,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    async fn login_failures_since(
        &self,
        username: &str,
        ip: &str,
        since: Timestamp,
    ) -> Result<FailureWindow>;
    async fn purge_login_failures(&self, before: Timestamp) -> Result<u64>;
    /// Forgets the account's failures, after it proved itself (a right code).
    async fn clear_login_failures(&self, username: &str) -> Result<()>;

    // --- first-run setup ----------------------------------------------------

    async fn create_setup_token(
        &self,
        token_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    /// Whether the token exists, is unused, unexpired, and no user exists yet.
    async fn setup_token_usable(&self, token_hash: &str, now: Timestamp) -> Result<bool>;
    /// Uses the token and creates the first user in one transaction.
    /// `NotFound` when the token is unknown, used or expired, or users exist.
    async fn complete_setup(
        &self,
        token_hash: &str,
        user: &NewUserRecord,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<User>;

    // --- the security log and alerts ---------------------------------------

    async fn append_events(&self, now: Timestamp, events: &[NewSecurityEvent]) -> Result<()>;
    /// How many events of `kind` came from `ip` since `since`.
    async fn count_events_from_ip(
        &self,
        kind: SecurityEventKind,
        ip: &str,
        since: Timestamp,
    ) -> Result<i64>;
    /// Newest first; `before_seq` pages backwards.
    async fn list_events(&self, before_seq: Option<i64>, limit: i64) -> Result<Vec<SecurityEvent>>;
    /// Oldest first, from `after_seq` on: for verifying the chain.
    async fn events_after(&self, after_seq: i64, limit: i64) -> Result<Vec<SecurityEvent>>;
    /// The newest event of `kind`, if any.
    async fn last_event_of_kind(&self, kind: &str) -> Result<Option<SecurityEvent>>;
    /// Raises an alert for `rule` and `subject` unless one was raised since
    /// `quiet_since`. Atomic across processes: of several concurrent callers
    /// exactly one gets `Some`.
    async fn raise_alert(
        &self,
        rule: &str,
        subject: &str,
        detail: &str,
        quiet_since: Timestamp,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<Option<Alert>>;
    async fn list_alerts(&self, limit: i64) -> Result<Vec<Alert>>;

    // --- shared periodic jobs -----------------------------------------------

    /// Claims `job` for this run unless some server claimed it since
    /// `not_since`. Atomic across processes: of several concurrent callers
    /// at most one gets `true`.
    async fn claim_job(&self, job: &str, not_since: Timestamp, now: Timestamp) -> Result<bool>;
}
