//! Two-factor sign-in state: sealed TOTP secrets, the last accepted time
//! step, recovery codes; and the walk over sealed values that key rotation
//! (rewrap) needs.

use async_trait::async_trait;
use domain::{NewSecurityEvent, Timestamp, UserId};

use crate::{Result, SessionRecord};

/// A user's two-factor state. Secrets are sealed (`vlm1.…`), never plain.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TotpState {
    /// The active secret, when two-factor sign-in is on.
    pub secret: Option<String>,
    /// A secret set up but not yet confirmed with a code.
    pub pending: Option<String>,
    pub last_step: Option<i64>,
}

impl std::fmt::Debug for TotpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpState")
            .field("enabled", &self.secret.is_some())
            .field("pending", &self.pending.is_some())
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// One sealed value and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub user_id: String,
    /// `totp_secret` or `totp_pending`.
    pub column: &'static str,
    pub value: String,
}

/// The columns that hold sealed values.
pub const SEALED_COLUMNS: [&str; 2] = ["totp_secret", "totp_pending"];

#[async_trait]
pub trait TotpStore {
    async fn totp_state(&self, user: UserId) -> Result<TotpState>;
    /// Stores (or with `None` clears) a secret awaiting confirmation.
    async fn set_totp_pending(&self, user: UserId, sealed: Option<&str>) -> Result<()>;
    /// Turns two-factor sign-in on, in one transaction: the confirmed secret
    /// and its step, new recovery codes (MACs) replacing any old ones, every
    /// other session of the user ended, the events recorded. With
    /// `upgrade`, `keep_session` (an enrolling session) is replaced by that
    /// one in the same transaction — `SessionEnded`, with nothing written,
    /// when it has ended meanwhile.
    #[allow(clippy::too_many_arguments)] // one transaction's worth of facts
    async fn enable_totp(
        &self,
        user: UserId,
        sealed: &str,
        step: i64,
        recovery_hashes: &[String],
        keep_session: Option<&str>,
        upgrade: Option<&SessionRecord>,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    /// Turns it off: secret, pending secret, step and recovery codes gone,
    /// every other session ended, the events recorded — after spending the
    /// code of time step `spends`, when one is given, in the same
    /// transaction. `false` when that step was spent already (a replay):
    /// then nothing is written.
    async fn disable_totp(
        &self,
        user: UserId,
        spends: Option<i64>,
        keep_session: Option<&str>,
        by: crate::ChangedBy,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<bool>;
    /// Replaces every recovery code of `user` (used or not) with new ones
    /// (MACs), ends every other session of the user, and records the
    /// events, in one transaction that first spends the code of time step
    /// `spends`. `false` when that step was spent already (a replay) or
    /// two-factor sign-in is off: then nothing is written.
    async fn replace_recovery_codes(
        &self,
        user: UserId,
        spends: i64,
        recovery_hashes: &[String],
        keep_session: Option<&str>,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<bool>;
    async fn unused_recovery_codes(&self, user: UserId) -> Result<i64>;
    /// Sealed values of users whose id is after `after`, in id order.
    async fn sealed_values(&self, after: Option<&str>, limit: i64) -> Result<Vec<SealedValue>>;
    /// Replaces a sealed value if it is still `old` (compare-and-swap, so a
    /// concurrent change is never overwritten); `false` if it changed.
    async fn reseal(&self, v: &SealedValue, new: &str) -> Result<bool>;
}

macro_rules! impl_totp_store {
    ($store:ty) => {
        impl $store {
            async fn clear_recovery_codes_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                user_id: &str,
            ) -> crate::Result<()> {
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Every recovery code of `user_id` replaced by `hashes`.
            async fn replace_recovery_codes_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                user_id: &str,
                hashes: &[String],
            ) -> crate::Result<()> {
                Self::clear_recovery_codes_in(tx, user_id).await?;
                for h in hashes {
                    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                        .bind(user_id)
                        .bind(h)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            /// Spends `factor` of `user` on `conn` (a transaction's, or the
            /// writer's); `false` when it was spent already.
            pub(crate) async fn spend_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                user: &str,
                factor: crate::SecondFactor<'_>,
                now: domain::Timestamp,
            ) -> crate::Result<bool> {
                let spent = match factor {
                    crate::SecondFactor::Step(step) => {
                        sqlx::query(
                            "UPDATE users SET totp_last_step = $1 WHERE id = $2 \
                             AND totp_secret IS NOT NULL \
                             AND (totp_last_step IS NULL OR totp_last_step < $1)",
                        )
                        .bind(step)
                        .bind(user)
                        .execute(&mut *conn)
                        .await?
                    }
                    crate::SecondFactor::RecoveryCode(code_hash) => {
                        sqlx::query(
                            "UPDATE recovery_codes SET used_at = $1 \
                             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                        )
                        .bind(now.millis())
                        .bind(user)
                        .bind(code_hash)
                        .execute(&mut *conn)
                        .await?
                    }
                };
                Ok(spent.rows_affected() == 1)
            }

            /// The end of turning two-factor sign-in on or off: the user's
            /// other sessions end, the events are recorded, all commits.
            /// A write transaction for a change to `user_id`'s second
            /// factor that first spends the code of time step `spends`, when
            /// one is given; `None` (nothing written) when that step was
            /// spent already, or no secret is active any more.
            async fn begin_spending(
                &self,
                user_id: &str,
                spends: Option<i64>,
                now: domain::Timestamp,
            ) -> crate::Result<
                Option<sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>>,
            > {
                let mut tx = self.begin_write().await?;
                if let Some(step) = spends {
                    let factor = crate::SecondFactor::Step(step);
                    if !Self::spend_in(&mut tx, user_id, factor, now).await? {
                        // Dropped uncommitted: nothing changes.
                        return Ok(None);
                    }
                }
                Ok(Some(tx))
            }

            async fn finish_totp_change(
                &self,
                mut tx: sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                user_id: &str,
                keep_session: Option<&str>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                Self::end_sessions_in(&mut tx, user_id, keep_session).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl crate::totp::TotpStore for $store {
            async fn totp_state(&self, user: domain::UserId) -> crate::Result<crate::TotpState> {
                let row: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT totp_secret, totp_pending, totp_last_step FROM users WHERE id = $1",
                )
                .bind(user.to_string())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .map(|(secret, pending, last_step)| crate::TotpState {
                        secret,
                        pending,
                        last_step,
                    })
                    .unwrap_or_default())
            }

            async fn set_totp_pending(
                &self,
                user: domain::UserId,
                sealed: Option<&str>,
            ) -> crate::Result<()> {
                sqlx::query("UPDATE users SET totp_pending = $1 WHERE id = $2")
                    .bind(sealed)
                    .bind(user.to_string())
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn enable_totp(
                &self,
                user: domain::UserId,
                sealed: &str,
                step: i64,
                recovery_hashes: &[String],
                keep_session: Option<&str>,
                upgrade: Option<&crate::SessionRecord>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let id = user.to_string();
                let mut tx = self.begin_write().await?;
                // Only over no active secret: a working second factor is
                // never replaced by a racing enrolment.
                let done = sqlx::query(
                    "UPDATE users SET totp_secret = $1, totp_pending = NULL, \
                     totp_last_step = $2, updated_at = $3 WHERE id = $4 AND totp_secret IS NULL",
                )
                .bind(sealed)
                .bind(step)
                .bind(now.millis())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(crate::StoreError::Conflict(
                        "two-factor sign-in is already on",
                    ));
                }
                Self::replace_recovery_codes_in(&mut tx, &id, recovery_hashes).await?;
                let keep = Self::replace_session_in(&mut tx, keep_session, upgrade).await?;
                self.finish_totp_change(tx, &id, keep, now, events).await
            }

            async fn disable_totp(
                &self,
                user: domain::UserId,
                spends: Option<i64>,
                keep_session: Option<&str>,
                by: crate::ChangedBy,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<bool> {
                let id = user.to_string();
                let Some(mut tx) = self.begin_spending(&id, spends, now).await? else {
                    return Ok(false);
                };
                Self::changed_by_in(&mut tx, by).await?;
                sqlx::query(
                    "UPDATE users SET totp_secret = NULL, totp_pending = NULL, \
                     totp_last_step = NULL, updated_at = $1 WHERE id = $2",
                )
                .bind(now.millis())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                Self::clear_recovery_codes_in(&mut tx, &id).await?;
                self.finish_totp_change(tx, &id, keep_session, now, events)
                    .await?;
                Ok(true)
            }

            async fn replace_recovery_codes(
                &self,
                user: domain::UserId,
                spends: i64,
                recovery_hashes: &[String],
                keep_session: Option<&str>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<bool> {
                let id = user.to_string();
                let Some(mut tx) = self.begin_spending(&id, Some(spends), now).await? else {
                    return Ok(false);
                };
                Self::replace_recovery_codes_in(&mut tx, &id, recovery_hashes).await?;
                self.finish_totp_change(tx, &id, keep_session, now, events)
                    .await?;
                Ok(true)
            }

            async fn unused_recovery_codes(&self, user: domain::UserId) -> crate::Result<i64> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user.to_string())
                .fetch_one(&self.pool)
                .await?;
                Ok(n)
            }

            async fn sealed_values(
                &self,
                after: Option<&str>,
                limit: i64,
            ) -> crate::Result<Vec<crate::SealedValue>> {
                let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT id, totp_secret, totp_pending FROM users \
                     WHERE id > $1 AND (totp_secret IS NOT NULL OR totp_pending IS NOT NULL) \
                     ORDER BY id LIMIT $2",
                )
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::new();
                for (id, secret, pending) in rows {
                    for (column, value) in crate::totp::SEALED_COLUMNS.into_iter().zip([secret, pending]) {
                        if let Some(value) = value {
                            out.push(crate::SealedValue {
                                user_id: id.clone(),
                                column,
                                value,
                            });
                        }
                    }
                }
                Ok(out)
            }

            async fn reseal(&self, v: &crate::SealedValue, new: &str) -> crate::Result<bool> {
                // The column name is one of two fixed strings, never input.
                let sql = match v.column {
                    "totp_secret" => {
                        "UPDATE users SET totp_secret = $1 WHERE id = $2 AND totp_secret = $3"
                    }
                    "totp_pending" => {
                        "UPDATE users SET totp_pending = $1 WHERE id = $2 AND totp_pending = $3"
                    }
                    other => {
                        return Err(crate::StoreError::Corrupt(format!(
                            "no sealed column {other}"
                        )));
                    }
                };
                let done = sqlx::query(sql)
                    .bind(new)
                    .bind(&v.user_id)
                    .bind(&v.value)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_totp_store;
