//! Use cases. The web layer and the CLI both call these; every business rule
//! lives here, once. Transactions are the store's, but which rows belong to
//! one transaction (a write and its security events) is decided here.

mod access;
mod accounts;
mod alerts;
mod audit;
pub mod background;
pub mod backup;
mod clock;
mod config;
mod demo;
mod error;
mod keys;
mod letters;
mod patients;
pub mod safety;
mod sessions;
mod setup;
mod tokens;
mod totp;

use std::sync::Arc;

use crypto::{Keyring, PasswordHasher};
use domain::{ChainHasher, NewSecurityEvent, Timestamp};
use secrecy::SecretBox;
use store::Store;
use tokio::sync::Semaphore;

pub use accounts::{Actor, FirstPassword};
pub use alerts::CSRF_ALERT_RULE;
pub use audit::{AccessLogReport, AccessSeal, Anchor, ChainReport, SEAL_EVERY_MS};
pub use backup::{
    BACKUP_ALERT_RULE, BackupManifest, BackupProgress, BackupSchedule, ProgressFn, RestoreSummary,
    check_backup_for_restore, check_upgrade, create_backup, restore_backup, verify_backup,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::AppConfig;
pub use demo::SeedReport;
pub use error::{AppError, AppResult};
pub use keys::{KeyLoader, KeyUse, RewrapReport};
pub use letters::{
    Author, LETTER_PAGE, LetterDraft, LetterPage, LetterView, ONLY_DRAFTS_ARE_EDITED,
};
pub use patients::{
    IfPossibleDuplicate, MAX_PAGE_SIZE, MAX_POSSIBLE_DUPLICATES, PatientPage, PatientResources,
    PatientSummary, PatientVersion, PatientView, avatar_gradient, parse_query,
};
pub use sessions::{ActiveSession, CsrfCheck, LoginOutcome, NewSession};
pub use setup::SetupLink;
pub use store::SessionStage;
pub use tokens::{TokenPrincipal, TokenScope, TokenView};
pub use totp::{TotpCode, TotpEnabled, TotpSetup, TotpStatus};

/// The security log's row hash: SHA-256 over the row's canonical bytes.
pub struct Sha256Chain;

impl ChainHasher for Sha256Chain {
    fn hash(&self, canonical: &[u8]) -> String {
        crypto::sha256_hex(canonical)
    }
}

/// Facts about the request behind a use case, for the security log.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: String,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
}

impl RequestMeta {
    /// Stamps an event with where it came from.
    pub fn stamp(&self, mut event: NewSecurityEvent) -> NewSecurityEvent {
        event.ip = Some(self.ip.clone());
        event.user_agent = self.user_agent.clone();
        event.referer = self.referer.clone();
        event.method = self.method.clone();
        event.path = self.path.clone();
        event
    }
}

/// The application: the store, the key-derived secrets and the policies.
pub struct App {
    store: Arc<dyn Store>,
    hasher: Arc<PasswordHasher>,
    csrf_key: SecretBox<[u8; 32]>,
    recovery_key: SecretBox<[u8; 32]>,
    /// Swapped whole when the key source changes (rotation), never edited.
    keyring: std::sync::RwLock<Arc<Keyring>>,
    /// Re-reads the key source, so a value is always sealed under the
    /// primary key the source names now, even before a reload poll.
    key_loader: Option<keys::KeyLoader>,
    clock: Arc<dyn Clock>,
    config: AppConfig,
    hashing: Arc<Semaphore>,
    http: reqwest::Client,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        config: AppConfig,
    ) -> AppResult<Self> {
        let hasher = PasswordHasher::new(keys.password_pepper())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        // One process-wide TLS provider (ring) for outgoing webhooks.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| AppError::Internal(format!("http client: {e}")))?;
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            store,
            hasher: Arc::new(hasher),
            csrf_key: keys.csrf_key(),
            recovery_key: keys.recovery_code_key(),
            keyring: std::sync::RwLock::new(keys),
            key_loader: None,
            clock,
            hashing: Arc::new(Semaphore::new(permits)),
            config,
            http,
        })
    }

    /// How to re-read the key source (see [`App::refresh_keyring`]).
    pub fn with_key_loader(mut self, loader: keys::KeyLoader) -> Self {
        self.key_loader = Some(loader);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether the database answers.
    pub async fn healthy(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    /// Deletes expired sessions and old login failures; run periodically.
    pub async fn purge_expired(&self) -> AppResult<()> {
        let now = self.now();
        self.store
            .purge_sessions(
                now.minus_millis(self.config.idle_timeout_ms),
                now.minus_millis(self.config.absolute_timeout_ms),
            )
            .await?;
        self.store
            .purge_login_failures(now.minus_millis(self.config.login_window_ms))
            .await?;
        Ok(())
    }
}
