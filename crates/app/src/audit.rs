//! Reading and verifying the security log.

use domain::SecurityEvent;

use crate::{Actor, App, AppResult};

/// What `vellum audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub rows_checked: i64,
    /// The first row whose hash or link is wrong, and why.
    pub first_broken: Option<(i64, String)>,
}

impl App {
    /// Security events, newest first (admins only).
    pub async fn security_events(
        &self,
        actor: Actor<'_>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> AppResult<Vec<SecurityEvent>> {
        actor.require_admin()?;
        Ok(self
            .store
            .list_events(before_seq, limit.clamp(1, 500))
            .await?)
    }

    /// Walks the whole log in order, recomputing every hash and link.
    pub async fn verify_security_log(&self) -> AppResult<ChainReport> {
        let mut prev_seq = 0_i64;
        let mut prev_hash = SecurityEvent::GENESIS.to_owned();
        let mut checked = 0_i64;
        loop {
            let batch = self.store.events_after(prev_seq, 1000).await?;
            if batch.is_empty() {
                return Ok(ChainReport {
                    rows_checked: checked,
                    first_broken: None,
                });
            }
            for row in batch {
                let broken = if row.seq != prev_seq + 1 {
                    Some(format!(
                        "sequence jumps from {prev_seq} to {} (rows missing)",
                        row.seq
                    ))
                } else if row.prev_hash != prev_hash {
                    Some("does not link to the row before it".to_owned())
                } else if crypto::sha256_hex(&row.canonical_bytes()) != row.hash {
                    Some("its content does not match its hash (altered)".to_owned())
                } else {
                    None
                };
                if let Some(reason) = broken {
                    return Ok(ChainReport {
                        rows_checked: checked,
                        first_broken: Some((row.seq, reason)),
                    });
                }
                checked += 1;
                prev_seq = row.seq;
                prev_hash = row.hash;
            }
        }
    }
}
