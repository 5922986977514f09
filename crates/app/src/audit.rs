//! Reading and verifying the security log, and sealing the access log into
//! it.
//!
//! The access log (who read or changed which record) is written by every
//! request, many rows per commit, so it is not hash-chained row by row as
//! the security log is: that would make every read wait on one chain. It is
//! **sealed** instead. Every few minutes a seal takes the rows written since
//! the last one, digests them in id order and records the range, the count
//! and the digest as an `access_log_sealed` event — a row of the hash-chained
//! security log. A sealed row cannot then change or vanish without the
//! digest, or the chain, showing it: `vellum audit verify` recomputes both.
//!
//! Whoever can write the database could still rewrite the whole chain,
//! consistently, or cut its newest rows off. An **anchor** — one row's
//! number and hash, taken by `vellum audit anchor` and kept outside the
//! database — shows it: a log rewritten or cut back since no longer holds
//! the anchored row.

use domain::{NewSecurityEvent, SecurityEvent, SecurityEventKind as Kind};
use store::AccessRow;

use crate::{Actor, App, AppError, AppResult};

/// What `vellum audit verify` found in the security log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub rows_checked: i64,
    /// The first row whose hash or link is wrong, and why.
    pub first_broken: Option<(i64, String)>,
}

/// A row of the security log, named by its number and hash, kept outside
/// the database. One line of text: `vellum-anchor v1 seq=N hash=HEX at=TIME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
    /// When the row was written (RFC 3339), for the reader.
    pub at: String,
}

impl Anchor {
    const TAG: &'static str = "vellum-anchor v1";

    pub fn line(&self) -> String {
        format!(
            "{} seq={} hash={} at={}",
            Self::TAG,
            self.seq,
            self.hash,
            self.at
        )
    }

    /// The anchor a line holds; `None` for a line that is not one (a
    /// comment, a blank line); `Err` for an anchor line that cannot be read.
    pub fn parse(line: &str) -> Result<Option<Self>, String> {
        let line = line.trim();
        if !line.starts_with("vellum-anchor") {
            return Ok(None);
        }
        let unreadable = || format!("not a readable anchor: {line}");
        let rest = line
            .strip_prefix(Self::TAG)
            .filter(|r| r.is_empty() || r.starts_with(char::is_whitespace))
            .ok_or_else(unreadable)?;
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let seq = field("seq")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .ok_or_else(unreadable)?;
        let hash = field("hash")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| h.to_ascii_lowercase())
            .ok_or_else(unreadable)?;
        Ok(Some(Self {
            seq,
            hash,
            at: field("at").unwrap_or_default(),
        }))
    }
}

/// How often a running server seals the access log.
pub const SEAL_EVERY_MS: i64 = 5 * 60_000;
/// The name under which the servers sharing a database take turns sealing.
const SEAL_JOB: &str = "access_log_seal";
/// The most rows one seal covers; more make several seals.
const SEAL_MAX_ROWS: i64 = 200_000;
/// Rows read at a time while sealing or verifying.
const SEAL_BATCH: i64 = 2_000;
/// The version of [`seal_line`]'s encoding a seal records, so a later
/// encoding can never be mistaken for a changed row.
const SEAL_VERSION: i64 = 1;

/// What one seal covers: the access-log rows with ids in
/// `(after_id, up_to_id]`, `rows` of them, whose digest is `digest`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessSeal {
    /// The encoding of the rows digested ([`SEAL_VERSION`]).
    pub v: i64,
    pub after_id: i64,
    pub up_to_id: i64,
    pub rows: i64,
    pub digest: String,
}

/// What `vellum audit verify` found in the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogReport {
    /// Seals checked, and the rows under them.
    pub seals: i64,
    pub rows_sealed: i64,
    /// Rows newer than the last seal: not yet covered.
    pub rows_unsealed: i64,
    /// Every seal (its security-log row) whose rows no longer match, and
    /// how: one bad range never hides a later one.
    pub broken: Vec<(i64, String)>,
}

/// The bytes a row adds to a seal's digest (encoding 1): its every column
/// as a JSON array in a fixed order — id, at, user_id, username, role,
/// action, resource_type, resource_id, patient_id, outcome — and a newline.
/// Frozen: it does not follow `AccessRow`, whose JSON is also an API's.
fn seal_line(row: &AccessRow) -> AppResult<Vec<u8>> {
    let columns = (
        row.id,
        row.at,
        row.user_id.as_deref(),
        row.username.as_str(),
        row.role.as_str(),
        row.action.as_str(),
        row.resource_type.as_str(),
        row.resource_id.as_deref(),
        row.patient_id.as_deref(),
        row.outcome.as_str(),
    );
    let mut line = serde_json::to_vec(&columns)
        .map_err(|e| AppError::Internal(format!("access-log row {}: {e}", row.id)))?;
    line.push(b'\n');
    Ok(line)
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

    /// Seals every access-log row written since the last seal — committed
    /// rows only, every one of them (see
    /// [`store::ClinicalStore::access_log_settled_up_to`]) — as one seal
    /// per [`SEAL_MAX_ROWS`] rows; none when there were no new rows. The
    /// operator (`vellum audit seal`), or [`App::seal_access_log_round`].
    pub async fn seal_access_log(&self) -> AppResult<Vec<AccessSeal>> {
        let mut after_id = match self
            .store
            .last_event_of_kind(Kind::AccessLogSealed.as_str())
            .await?
        {
            Some(event) => Self::seal_of(&event)?.up_to_id,
            None => 0,
        };
        let settled = self.store.access_log_settled_up_to().await?;
        let mut seals = Vec::new();
        while after_id < settled {
            let seal = self.seal_rows(after_id, settled).await?;
            after_id = seal.up_to_id;
            seals.push(seal);
        }
        Ok(seals)
    }

    /// A running server's round of sealing: taken by one of the servers
    /// sharing the database, every [`SEAL_EVERY_MS`].
    pub async fn seal_access_log_round(&self) -> AppResult<Vec<AccessSeal>> {
        let now = self.now();
        // A little slack, so a tick a moment early does not skip a round.
        let not_since = now.minus_millis(SEAL_EVERY_MS - SEAL_EVERY_MS / 20);
        if !self.store.claim_job(SEAL_JOB, not_since, now).await? {
            return Ok(Vec::new());
        }
        self.seal_access_log().await
    }

    /// Seals the rows after `after_id`, up to `settled` and at most
    /// [`SEAL_MAX_ROWS`] of them, as one `access_log_sealed` event.
    async fn seal_rows(&self, after_id: i64, settled: i64) -> AppResult<AccessSeal> {
        let (rows, last_id, digest) = self.digest_rows(after_id, settled, SEAL_MAX_ROWS).await?;
        // Ids a transaction took and rolled back leave gaps: the seal runs
        // to `settled` when it took every row up to there.
        let up_to_id = if rows < SEAL_MAX_ROWS {
            settled
        } else {
            last_id
        };
        let seal = AccessSeal {
            v: SEAL_VERSION,
            after_id,
            up_to_id,
            rows,
            digest,
        };
        let detail = serde_json::to_value(&seal)
            .map_err(|e| AppError::Internal(format!("access-log seal: {e}")))?;
        self.store
            .append_events(
                self.now(),
                &[NewSecurityEvent::new(Kind::AccessLogSealed).detail(detail)],
            )
            .await?;
        Ok(seal)
    }

    /// The seal an `access_log_sealed` event records.
    fn seal_of(event: &SecurityEvent) -> AppResult<AccessSeal> {
        serde_json::from_str(&event.detail).map_err(|e| {
            AppError::Internal(format!(
                "security-log row {} is not a readable access-log seal: {e}",
                event.seq
            ))
        })
    }

    /// Recomputes every seal of the access log from the rows now there: a
    /// row changed, removed or slipped into a sealed range shows as a digest
    /// or count that no longer matches. Every seal is checked, whatever an
    /// earlier one showed. Rows newer than the last seal are counted, not
    /// checked.
    pub async fn verify_access_log(&self) -> AppResult<AccessLogReport> {
        let mut report = AccessLogReport {
            seals: 0,
            rows_sealed: 0,
            rows_unsealed: 0,
            broken: Vec::new(),
        };
        let (mut after_seq, mut sealed_to) = (0_i64, 0_i64);
        loop {
            let events = self.store.events_after(after_seq, 1000).await?;
            let Some(last) = events.last() else { break };
            after_seq = last.seq;
            for event in events
                .iter()
                .filter(|e| e.kind == Kind::AccessLogSealed.as_str())
            {
                let seal = match Self::seal_of(event) {
                    Ok(seal) if seal.v == SEAL_VERSION => seal,
                    Ok(seal) => {
                        let why = format!("a seal of encoding {} this release cannot read", seal.v);
                        report.broken.push((event.seq, why));
                        continue;
                    }
                    Err(e) => {
                        report.broken.push((event.seq, e.to_string()));
                        continue;
                    }
                };
                // Seals follow on from each other; two seals of the same
                // rows (an operator's and a server's at one moment) are no
                // harm.
                if seal.after_id > sealed_to {
                    report.broken.push((
                        event.seq,
                        format!(
                            "rows after id {sealed_to} up to id {} were never sealed",
                            seal.after_id
                        ),
                    ));
                }
                let (rows, _, digest) = self
                    .digest_rows(seal.after_id, seal.up_to_id, i64::MAX)
                    .await?;
                if rows != seal.rows || digest != seal.digest {
                    report.broken.push((
                        event.seq,
                        format!(
                            "the rows after id {} up to id {} no longer match their seal ({} \
                             rows sealed, {rows} there now): changed, removed or added since",
                            seal.after_id, seal.up_to_id, seal.rows
                        ),
                    ));
                }
                report.seals += 1;
                if seal.up_to_id > sealed_to {
                    report.rows_sealed += if seal.after_id == sealed_to {
                        seal.rows
                    } else {
                        // Overlapping an earlier seal: only its newer rows.
                        self.digest_rows(sealed_to, seal.up_to_id, i64::MAX)
                            .await?
                            .0
                    };
                    sealed_to = seal.up_to_id;
                }
            }
        }
        report.rows_unsealed = self.digest_rows(sealed_to, i64::MAX, i64::MAX).await?.0;
        Ok(report)
    }

    /// The number, the last id and the digest of the access-log rows with
    /// ids in `(after_id, up_to_id]`, at most `max_rows` of them: what a
    /// seal records, and what verifying recomputes.
    async fn digest_rows(
        &self,
        after_id: i64,
        up_to_id: i64,
        max_rows: i64,
    ) -> AppResult<(i64, i64, String)> {
        let mut digest = crypto::Sha256Stream::default();
        let (mut last_id, mut rows) = (after_id, 0_i64);
        loop {
            let batch = self.store.access_rows_after(last_id, SEAL_BATCH).await?;
            let full = i64::try_from(batch.len()).unwrap_or(0) == SEAL_BATCH;
            for row in &batch {
                if row.id > up_to_id || rows == max_rows {
                    return Ok((rows, last_id, digest.finish_hex()));
                }
                digest.update(&seal_line(row)?);
                last_id = row.id;
                rows += 1;
            }
            if !full {
                return Ok((rows, last_id, digest.finish_hex()));
            }
        }
    }

    /// Seals the access log (so the anchor covers every committed read),
    /// then names the newest row of the security log; none while it is
    /// empty.
    pub async fn anchor_security_log(&self) -> AppResult<Option<Anchor>> {
        self.seal_access_log().await?;
        let newest = self.store.list_events(None, 1).await?.into_iter().next();
        Ok(newest.map(|e| Anchor {
            seq: e.seq,
            hash: e.hash,
            at: e.at.to_rfc3339(),
        }))
    }

    /// Whether the security log still holds `anchor`'s row as it was:
    /// `Err` says how it does not (rewritten, or cut back).
    pub async fn check_anchor(&self, anchor: &Anchor) -> AppResult<Result<(), String>> {
        let row = self
            .store
            .events_after(anchor.seq - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|r| r.seq == anchor.seq);
        Ok(match row {
            Some(r) if r.hash == anchor.hash => Ok(()),
            Some(_) => Err(format!(
                "row {} is not the row anchored at {}: the log was rewritten since",
                anchor.seq, anchor.at
            )),
            None => Err(format!(
                "row {} (anchored at {}) is gone: the log was cut back since",
                anchor.seq, anchor.at
            )),
        })
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

#[cfg(test)]
mod tests {
    use super::Anchor;

    #[test]
    fn an_anchor_line_reads_back_as_the_anchor_it_was_written_from() {
        let anchor = Anchor {
            seq: 42,
            hash: "ab".repeat(32),
            at: "2026-11-27T09:00:00.000Z".to_owned(),
        };
        assert_eq!(Anchor::parse(&anchor.line()), Ok(Some(anchor.clone())));
        assert_eq!(
            Anchor::parse(&format!("  {}\n", anchor.line())),
            Ok(Some(anchor))
        );
        for other in ["", "# kept daily", "> vellum-anchor v1 seq=1"] {
            assert_eq!(Anchor::parse(other), Ok(None), "{other:?}");
        }
        // Copied by hand in capitals: the same anchor.
        let upper = format!("vellum-anchor v1 seq=42 hash={}", "AB".repeat(32));
        assert_eq!(
            Anchor::parse(&upper).unwrap().unwrap().hash,
            "ab".repeat(32)
        );
        // A line that looks like an anchor but cannot be read is an error,
        // never skipped.
        for bad in [
            "vellum-anchor v2 seq=1".to_owned(),
            "vellum-anchor v10 seq=1".to_owned(),
            "vellum-anchor  v1 seq=1".to_owned(),
            "vellum-anchor v1 seq=0 hash=".to_owned() + &"ab".repeat(32),
            "vellum-anchor v1 seq=x hash=".to_owned() + &"ab".repeat(32),
            "vellum-anchor v1 seq=3 hash=abc".to_owned(),
            "vellum-anchor v1 hash=".to_owned() + &"zz".repeat(32),
        ] {
            assert!(Anchor::parse(&bad).is_err(), "{bad}");
        }
    }
}
