//! The keyring at run time: which keys the stored values need, re-sealing
//! under the primary key (rewrap), and swapping in a rotated keyring.

use std::collections::BTreeMap;
use std::sync::Arc;

use crypto::{Keyring, sealed_key_id};
use domain::{NewSecurityEvent, SecurityEventKind as Kind};
use store::SealedValue;

use crate::{App, AppError, AppResult};

/// Re-reads the keyring from its source.
pub type KeyLoader = Arc<dyn Fn() -> Result<Keyring, String> + Send + Sync>;

/// How many values one rewrap batch re-seals.
const BATCH: i64 = 200;

/// How many sealed values each key id seals (ids the keyring lacks too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUse {
    pub by_key: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    pub resealed: i64,
    pub already_primary: i64,
    /// Values changed by someone else while we worked; the next run takes them.
    pub skipped: i64,
}

fn place(v: &SealedValue) -> String {
    format!("users.{}:{}", v.column, v.user_id)
}

impl App {
    /// The keyring in use now.
    pub fn keyring(&self) -> Arc<Keyring> {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a keyring reloaded from the key source (after `vellum keys
    /// rotate`). Refused when its root secret differs — the password pepper
    /// and CSRF key would change — or when it lacks a key stored values need.
    pub async fn reload_keyring(&self, new: Keyring) -> AppResult<bool> {
        let current = self.keyring();
        if !current.same_root(&new) {
            return Err(AppError::Conflict(
                "the reloaded keyring has a different root secret; kept the old one".into(),
            ));
        }
        let missing = self.missing_keys(&new).await?;
        if !missing.is_empty() {
            return Err(AppError::Conflict(format!(
                "the reloaded keyring cannot open key(s) {} that stored values need; kept the old one",
                missing.join(", ")
            )));
        }
        let changed = current.keys() != new.keys();
        if changed {
            match self.keyring.write() {
                Ok(mut k) => *k = Arc::new(new),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
            }
        }
        Ok(changed)
    }

    /// Re-reads the key source (when the app has a loader) and swaps in a
    /// rotated keyring. Called before sealing anything new, so no value is
    /// sealed under a key an operator has just rotated away from.
    pub async fn refresh_keyring(&self) -> AppResult<()> {
        let Some(loader) = &self.key_loader else {
            return Ok(());
        };
        let new =
            loader().map_err(|e| AppError::Internal(format!("re-reading the key source: {e}")))?;
        if new.keys() != self.keyring().keys() {
            self.reload_keyring(new).await?;
            tracing::info!(primary = %self.keyring().primary_id(), "keyring reloaded");
        }
        Ok(())
    }

    async fn each_sealed(&self, mut f: impl FnMut(&SealedValue)) -> AppResult<()> {
        let mut after: Option<String> = None;
        loop {
            let batch = self.store.sealed_values(after.as_deref(), BATCH).await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            after = Some(last.user_id.clone());
            batch.iter().for_each(&mut f);
        }
    }

    /// How many stored values each key id seals.
    pub async fn key_use(&self) -> AppResult<KeyUse> {
        let mut use_ = KeyUse::default();
        self.each_sealed(|v| {
            let id = sealed_key_id(&v.value).unwrap_or("(malformed)").to_owned();
            *use_.by_key.entry(id).or_default() += 1;
        })
        .await?;
        Ok(use_)
    }

    /// Key ids stored values were sealed with that `keyring` cannot open:
    /// ids it does not hold, and ids it holds with other key material (a
    /// different keyring's `k1`) — one value per key id is opened to check.
    pub async fn missing_keys(&self, keyring: &Keyring) -> AppResult<Vec<String>> {
        let mut sample: BTreeMap<String, SealedValue> = BTreeMap::new();
        self.each_sealed(|v| {
            let id = sealed_key_id(&v.value).unwrap_or("(malformed)").to_owned();
            sample.entry(id).or_insert_with(|| v.clone());
        })
        .await?;
        Ok(sample
            .into_iter()
            .filter(|(_, v)| keyring.open(&v.value, &place(v)).is_err())
            .map(|(id, _)| id)
            .collect())
    }

    /// Re-seals every value not under the primary key, in batches, each
    /// value by compare-and-swap so a concurrent change (a user enrolling
    /// meanwhile) is never overwritten. Safe to interrupt and run again.
    pub async fn rewrap(&self, mut progress: impl FnMut(i64)) -> AppResult<RewrapReport> {
        let keyring = self.keyring();
        let primary = keyring.primary_id().to_owned();
        let mut report = RewrapReport::default();
        let mut after: Option<String> = None;
        loop {
            let batch = self.store.sealed_values(after.as_deref(), BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.user_id.clone());
            for v in &batch {
                if sealed_key_id(&v.value) == Some(primary.as_str()) {
                    report.already_primary += 1;
                    continue;
                }
                let plain = keyring
                    .open(&v.value, &place(v))
                    .map_err(|e| AppError::Internal(format!("{} does not open: {e}", place(v))))?;
                let new = keyring
                    .seal(&plain, &place(v))
                    .map_err(|e| AppError::Internal(format!("sealing: {e}")))?;
                if self.store.reseal(v, &new).await? {
                    report.resealed += 1;
                } else {
                    report.skipped += 1;
                }
            }
            progress(report.resealed + report.already_primary + report.skipped);
        }
        Ok(report)
    }

    /// Records a key operation in the security log.
    pub async fn record_key_event(&self, kind: Kind, detail: serde_json::Value) -> AppResult<()> {
        let event = NewSecurityEvent::new(kind).detail(detail);
        self.store.append_events(self.now(), &[event]).await?;
        Ok(())
    }
}
