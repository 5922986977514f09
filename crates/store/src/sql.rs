//! The SQL both backends share. SQLite and PostgreSQL both accept `$n`
//! placeholders, `ON CONFLICT … DO UPDATE` and `RETURNING`, so one body of
//! queries serves both; each backend supplies only how a write transaction
//! starts (and takes the security log's lock) and its migrations.

/// Implements [`crate::Store`] for a backend struct with `pool` and `chain`
/// fields and a `begin_write()` method that starts a transaction holding
/// the write lock of the security log.
macro_rules! impl_store {
    ($store:ty, $backend:expr) => {
        impl $store {
            /// Stores session `s` on `conn` (a transaction's, or the
            /// writer's).
            pub(crate) async fn insert_session_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                s: &crate::SessionRecord,
            ) -> crate::Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, csrf_tag, created_at, \
                     last_seen_at, stage, issued_role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&s.token_hash)
                .bind(s.user_id.map(|u| u.to_string()))
                .bind(&s.csrf_tag)
                .bind(s.created_at.millis())
                .bind(s.last_seen_at.millis())
                .bind(s.stage.as_str())
                .bind(s.issued_role.map(|r| r.as_str()))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Whether account `id` is an active administrator, read on
            /// `conn` (a transaction's).
            async fn is_active_admin_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                id: &str,
            ) -> crate::Result<bool> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE id = $1 AND role = 'admin' AND active",
                )
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                Ok(n > 0)
            }

            /// Inside the transaction of a change to an account: refuses it
            /// (`Forbidden`) when an administrator makes it and is no
            /// longer an active administrator — demoted or deactivated by a
            /// change that committed while this request was under way.
            pub(crate) async fn changed_by_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                by: crate::ChangedBy,
            ) -> crate::Result<()> {
                if let crate::ChangedBy::Admin(admin) = by {
                    if !Self::is_active_admin_in(conn, &admin.to_string()).await? {
                        return Err(crate::StoreError::Forbidden);
                    }
                }
                Ok(())
            }

            /// The write transaction of a change to an account made `by`
            /// someone, refused at once as [`Self::changed_by_in`] says.
            pub(crate) async fn begin_write_by(
                &self,
                by: crate::ChangedBy,
            ) -> crate::Result<sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>> {
                let mut tx = self.begin_write().await?;
                Self::changed_by_in(&mut tx, by).await?;
                Ok(tx)
            }

            /// After a change to an account that was an active
            /// administrator (`was_admin`), inside its transaction: refuses
            /// it when no active administrator would remain.
            pub(crate) async fn keep_an_admin_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                was_admin: bool,
            ) -> crate::Result<()> {
                if !was_admin {
                    return Ok(());
                }
                let left: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND active",
                )
                .fetch_one(&mut *conn)
                .await?;
                if left == 0 {
                    return Err(crate::StoreError::Conflict(
                        "this would leave no active administrator: make another account an \
                         administrator first",
                    ));
                }
                Ok(())
            }

            /// Revokes every API token of account `user_id` not revoked
            /// yet, on `conn` (a transaction's); gives how many.
            pub(crate) async fn revoke_all_api_tokens_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                user_id: &str,
                now: domain::Timestamp,
            ) -> crate::Result<u64> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(now.millis())
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }

            /// Ends the session `token_hash` names on `conn` (a
            /// transaction's); gives how many ended (0 or 1).
            pub(crate) async fn end_session_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                token_hash: &str,
            ) -> crate::Result<u64> {
                let ended = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(conn)
                    .await?;
                Ok(ended.rows_affected())
            }

            /// Sets the user's password hash inside `tx`; `must_change`: a
            /// temporary one, for its holder to replace at the next sign-in.
            /// `NotFound` when there is no such user.
            async fn write_password_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                id: domain::UserId,
                password_hash: &str,
                must_change: bool,
                now: domain::Timestamp,
            ) -> crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2, \
                     must_change_password = $3 WHERE id = $4",
                )
                .bind(password_hash)
                .bind(now.millis())
                .bind(must_change)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(crate::StoreError::NotFound);
                }
                Ok(())
            }

            /// With `upgrade`, ends `keep_session` and stores `upgrade` in
            /// its place inside `tx` — `SessionEnded` when `keep_session`
            /// was gone already, so an ended partial session never turns
            /// into a full one; gives the session to keep when the user's
            /// other sessions end. A full session clears the account's
            /// sign-in failures, as a complete sign-in does.
            async fn replace_session_in<'k>(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                keep_session: Option<&'k str>,
                upgrade: Option<&'k crate::SessionRecord>,
            ) -> crate::Result<Option<&'k str>> {
                let Some(new) = upgrade else {
                    return Ok(keep_session);
                };
                if let Some(old) = keep_session
                    && Self::end_session_in(&mut **tx, old).await? != 1
                {
                    return Err(crate::StoreError::SessionEnded);
                }
                Self::insert_session_in(&mut **tx, new).await?;
                if new.stage == crate::SessionStage::Full {
                    sqlx::query(
                        "DELETE FROM login_failures \
                         WHERE username = (SELECT username FROM users WHERE id = $1)",
                    )
                    .bind(new.user_id.map(|u| u.to_string()))
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(Some(new.token_hash.as_str()))
            }

            /// Ends every session of the user but `keep` inside `tx`;
            /// returns how many.
            async fn end_sessions_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                user_id: &str,
                keep: Option<&str>,
            ) -> crate::Result<u64> {
                let done =
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
                        .bind(user_id)
                        .bind(keep.unwrap_or(""))
                        .execute(&mut **tx)
                        .await?;
                Ok(done.rows_affected())
            }

            /// Appends `events` to the hash chain inside `tx` (which holds
            /// the log's write lock).
            async fn append_in(
                &self,
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let last: Option<(i64, String)> = sqlx::query_as(
                    "SELECT seq, hash FROM security_events ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&mut **tx)
                .await?;
                let (mut seq, mut prev) =
                    last.unwrap_or((0, domain::SecurityEvent::GENESIS.to_owned()));
                for e in events {
                    seq += 1;
                    let mut row = domain::SecurityEvent {
                        seq,
                        at: now,
                        kind: e.kind.map(|k| k.as_str()).unwrap_or("unknown").to_owned(),
                        user_id: e.user_id.map(|u| u.to_string()),
                        username: e.username.clone(),
                        ip: e.ip.clone(),
                        user_agent: e.user_agent.clone(),
                        referer: e.referer.clone(),
                        method: e.method.clone(),
                        path: e.path.clone(),
                        detail: e.detail.clone(),
                        prev_hash: prev,
                        hash: String::new(),
                    };
                    row.hash = self.chain.hash(&row.canonical_bytes());
                    sqlx::query(
                        "INSERT INTO security_events (seq, at, kind, user_id, username, ip, \
                         user_agent, referer, method, path, detail, prev_hash, hash) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .bind(row.seq)
                    .bind(row.at.millis())
                    .bind(&row.kind)
                    .bind(&row.user_id)
                    .bind(&row.username)
                    .bind(&row.ip)
                    .bind(&row.user_agent)
                    .bind(&row.referer)
                    .bind(&row.method)
                    .bind(&row.path)
                    .bind(&row.detail)
                    .bind(&row.prev_hash)
                    .bind(&row.hash)
                    .execute(&mut **tx)
                    .await?;
                    prev = row.hash;
                }
                Ok(())
            }

            async fn insert_user_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                user: &crate::NewUserRecord,
                now: domain::Timestamp,
            ) -> crate::Result<domain::User> {
                sqlx::query(
                    "INSERT INTO users (id, username, role, password_hash, active, created_at, \
                     updated_at, must_change_password) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                )
                .bind(user.id.to_string())
                .bind(user.username.as_str())
                .bind(user.role.as_str())
                .bind(&user.password_hash)
                .bind(true)
                .bind(now.millis())
                .bind(user.must_change_password)
                .execute(&mut **tx)
                .await
                .map_err(|e| crate::StoreError::on_unique(e, "username"))?;
                Ok(domain::User {
                    id: user.id,
                    username: user.username.clone(),
                    role: user.role,
                    active: true,
                    created_at: now,
                })
            }
        }

        #[async_trait::async_trait]
        impl crate::Store for $store {
            fn backend(&self) -> crate::Backend {
                $backend
            }

            async fn ping(&self) -> crate::Result<()> {
                self.ping_db().await
            }

            async fn close(&self) {
                self.close_all().await;
            }

            async fn count_users(&self) -> crate::Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }

            async fn create_user(
                &self,
                user: &crate::NewUserRecord,
                by: crate::ChangedBy,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<domain::User> {
                let mut tx = self.begin_write_by(by).await?;
                let created = Self::insert_user_in(&mut tx, user, now).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn user_by_username(
                &self,
                username: &domain::Username,
            ) -> crate::Result<Option<crate::UserRecord>> {
                let row: Option<crate::records::UserRow> = sqlx::query_as(
                    "SELECT id, username, role, password_hash, active, created_at, \
                     must_change_password FROM users WHERE username = $1",
                )
                .bind(username.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(crate::UserRecord::try_from).transpose()
            }

            async fn user_by_id(
                &self,
                id: domain::UserId,
            ) -> crate::Result<Option<crate::UserRecord>> {
                let row: Option<crate::records::UserRow> = sqlx::query_as(
                    "SELECT id, username, role, password_hash, active, created_at, \
                     must_change_password FROM users WHERE id = $1",
                )
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.map(crate::UserRecord::try_from).transpose()
            }

            async fn set_password(
                &self,
                id: domain::UserId,
                password_hash: &str,
                keep_session: Option<&str>,
                upgrade: Option<&crate::SessionRecord>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                Self::write_password_in(&mut tx, id, password_hash, false, now).await?;
                let keep = Self::replace_session_in(&mut tx, keep_session, upgrade).await?;
                Self::end_sessions_in(&mut tx, &id.to_string(), keep).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn reset_password(
                &self,
                id: domain::UserId,
                password_hash: &str,
                by: crate::ChangedBy,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write_by(by).await?;
                Self::write_password_in(&mut tx, id, password_hash, true, now).await?;
                Self::end_sessions_in(&mut tx, &id.to_string(), None).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_user_role(
                &self,
                id: domain::UserId,
                role: domain::Role,
                by: crate::ChangedBy,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let id = id.to_string();
                let mut tx = self.begin_write_by(by).await?;
                let was_admin = Self::is_active_admin_in(&mut tx, &id).await?;
                let done =
                    sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
                        .bind(role.as_str())
                        .bind(now.millis())
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 0 {
                    return Err(crate::StoreError::NotFound);
                }
                Self::keep_an_admin_in(&mut tx, was_admin).await?;
                Self::end_sessions_in(&mut tx, &id, None).await?;
                Self::revoke_all_api_tokens_in(&mut tx, &id, now).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_user_active(
                &self,
                id: domain::UserId,
                active: bool,
                by: crate::ChangedBy,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write_by(by).await?;
                let was_admin = Self::is_active_admin_in(&mut tx, &id.to_string()).await?;
                let done =
                    sqlx::query("UPDATE users SET active = $1, updated_at = $2 WHERE id = $3")
                        .bind(active)
                        .bind(now.millis())
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 0 {
                    return Err(crate::StoreError::NotFound);
                }
                Self::keep_an_admin_in(&mut tx, was_admin).await?;
                if !active {
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_session(&self, s: &crate::SessionRecord) -> crate::Result<()> {
                let mut conn = self.writer().acquire().await?;
                Self::insert_session_in(&mut conn, s).await
            }

            async fn session(
                &self,
                token_hash: &str,
            ) -> crate::Result<Option<(crate::SessionRecord, Option<domain::User>)>> {
                self.by_key::<crate::records::SessionUserRow>(
                    crate::records::SESSION_USER_SQL,
                    token_hash,
                )
                .await?
                    .map(crate::records::SessionUserRow::split)
                    .transpose()
            }

            async fn touch_session(
                &self,
                token_hash: &str,
                at: domain::Timestamp,
            ) -> crate::Result<()> {
                sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                    .bind(at.millis())
                    .bind(token_hash)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn set_session_csrf(&self, token_hash: &str, csrf_tag: &str) -> crate::Result<()> {
                sqlx::query("UPDATE sessions SET csrf_tag = $1 WHERE token_hash = $2")
                    .bind(csrf_tag)
                    .bind(token_hash)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn start_session(
                &self,
                replaces: Option<&str>,
                s: &crate::SessionRecord,
                username: &domain::Username,
                spends: Option<crate::SecondFactor<'_>>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                if let Some(factor) = spends {
                    let Some(user) = s.user_id else {
                        return Err(crate::StoreError::Refused(
                            "a second factor is spent only by a user's sign-in".to_owned(),
                        ));
                    };
                    if !Self::spend_in(&mut tx, &user.to_string(), factor, now).await? {
                        // Dropped uncommitted: nothing of the sign-in stays.
                        return Ok(false);
                    }
                }
                if let Some(old) = replaces {
                    let ended = Self::end_session_in(&mut tx, old).await?;
                    if spends.is_some() && ended != 1 {
                        // The partial session it completes has ended (signed
                        // out, reset by an administrator, or completed by
                        // another factor meanwhile): no session from it.
                        return Ok(false);
                    }
                }
                Self::insert_session_in(&mut tx, s).await?;
                // Only a complete sign-in clears the failure count: after the
                // password alone, wrong codes must keep counting.
                if s.stage == crate::SessionStage::Full {
                    sqlx::query("DELETE FROM login_failures WHERE username = $1")
                        .bind(username.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn end_session(
                &self,
                token_hash: &str,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                Self::end_session_in(&mut tx, token_hash).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn end_user_sessions(
                &self,
                id: domain::UserId,
                keep_session: Option<&str>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<u64> {
                let mut tx = self.begin_write().await?;
                let ended = Self::end_sessions_in(&mut tx, &id.to_string(), keep_session).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn purge_sessions(
                &self,
                idle_cutoff: domain::Timestamp,
                absolute_cutoff: domain::Timestamp,
            ) -> crate::Result<u64> {
                let done =
                    sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
                        .bind(idle_cutoff.millis())
                        .bind(absolute_cutoff.millis())
                        .execute(self.writer())
                        .await?;
                Ok(done.rows_affected())
            }

            async fn record_login_failure(
                &self,
                username: &str,
                ip: &str,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO login_failures (username, ip, at) VALUES ($1, $2, $3)")
                    .bind(username)
                    .bind(ip)
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn login_failures_since(
                &self,
                username: &str,
                ip: &str,
                since: domain::Timestamp,
            ) -> crate::Result<crate::FailureWindow> {
                let (account, account_oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(at) FROM login_failures WHERE username = $1 AND at >= $2",
                )
                .bind(username)
                .bind(since.millis())
                .fetch_one(&self.pool)
                .await?;
                let (ip_count, ip_oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(at) FROM login_failures WHERE ip = $1 AND at >= $2",
                )
                .bind(ip)
                .bind(since.millis())
                .fetch_one(&self.pool)
                .await?;
                Ok(crate::FailureWindow {
                    account,
                    account_oldest: account_oldest.map(domain::Timestamp),
                    ip: ip_count,
                    ip_oldest: ip_oldest.map(domain::Timestamp),
                })
            }

            async fn clear_login_failures(&self, username: &str) -> crate::Result<()> {
                sqlx::query("DELETE FROM login_failures WHERE username = $1")
                    .bind(username)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn purge_login_failures(&self, before: domain::Timestamp) -> crate::Result<u64> {
                let done = sqlx::query("DELETE FROM login_failures WHERE at < $1")
                    .bind(before.millis())
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected())
            }

            async fn create_setup_token(
                &self,
                token_hash: &str,
                now: domain::Timestamp,
                expires_at: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO setup_tokens (token_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(token_hash)
                .bind(now.millis())
                .bind(expires_at.millis())
                .execute(&mut *tx)
                .await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn setup_token_usable(
                &self,
                token_hash: &str,
                now: domain::Timestamp,
            ) -> crate::Result<bool> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1 \
                     AND used_at IS NULL AND expires_at > $2 \
                     AND NOT EXISTS (SELECT 1 FROM users)",
                )
                .bind(token_hash)
                .bind(now.millis())
                .fetch_one(&self.pool)
                .await?;
                Ok(n > 0)
            }

            async fn complete_setup(
                &self,
                token_hash: &str,
                user: &crate::NewUserRecord,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<domain::User> {
                let mut tx = self.begin_write().await?;
                let used = sqlx::query(
                    "UPDATE setup_tokens SET used_at = $1 WHERE token_hash = $2 \
                     AND used_at IS NULL AND expires_at > $1 \
                     AND NOT EXISTS (SELECT 1 FROM users)",
                )
                .bind(now.millis())
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
                if used.rows_affected() != 1 {
                    return Err(crate::StoreError::NotFound);
                }
                let created = Self::insert_user_in(&mut tx, user, now).await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn append_events(
                &self,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn count_events_from_ip(
                &self,
                kind: domain::SecurityEventKind,
                ip: &str,
                since: domain::Timestamp,
            ) -> crate::Result<i64> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM security_events WHERE kind = $1 AND ip = $2 AND at >= $3",
                )
                .bind(kind.as_str())
                .bind(ip)
                .bind(since.millis())
                .fetch_one(&self.pool)
                .await?;
                Ok(n)
            }

            async fn list_events(
                &self,
                before_seq: Option<i64>,
                limit: i64,
            ) -> crate::Result<Vec<domain::SecurityEvent>> {
                let rows: Vec<crate::records::EventRow> = sqlx::query_as(
                    "SELECT seq, at, kind, user_id, username, ip, user_agent, referer, method, \
                     path, detail, prev_hash, hash FROM security_events \
                     WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                )
                .bind(before_seq.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn events_after(
                &self,
                after_seq: i64,
                limit: i64,
            ) -> crate::Result<Vec<domain::SecurityEvent>> {
                let rows: Vec<crate::records::EventRow> = sqlx::query_as(
                    "SELECT seq, at, kind, user_id, username, ip, user_agent, referer, method, \
                     path, detail, prev_hash, hash FROM security_events \
                     WHERE seq > $1 ORDER BY seq ASC LIMIT $2",
                )
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn last_event_of_kind(
                &self,
                kind: &str,
            ) -> crate::Result<Option<domain::SecurityEvent>> {
                let row: Option<crate::records::EventRow> = sqlx::query_as(
                    "SELECT seq, at, kind, user_id, username, ip, user_agent, referer, method, \
                     path, detail, prev_hash, hash FROM security_events \
                     WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn raise_alert(
                &self,
                rule: &str,
                subject: &str,
                detail: &str,
                quiet_since: domain::Timestamp,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<Option<domain::Alert>> {
                let mut tx = self.begin_write().await?;
                let won: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO alert_state (rule, subject, raised_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (rule, subject) DO UPDATE SET raised_at = excluded.raised_at \
                     WHERE alert_state.raised_at < $4 RETURNING raised_at",
                )
                .bind(rule)
                .bind(subject)
                .bind(now.millis())
                .bind(quiet_since.millis())
                .fetch_optional(&mut *tx)
                .await?;
                if won.is_none() {
                    return Ok(None);
                }
                let row: crate::records::AlertRow = sqlx::query_as(
                    "INSERT INTO alerts (rule, subject, created_at, detail) \
                     VALUES ($1, $2, $3, $4) RETURNING id, rule, subject, created_at, detail",
                )
                .bind(rule)
                .bind(subject)
                .bind(now.millis())
                .bind(detail)
                .fetch_one(&mut *tx)
                .await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(Some(row.into()))
            }

            async fn list_alerts(&self, limit: i64) -> crate::Result<Vec<domain::Alert>> {
                let rows: Vec<crate::records::AlertRow> = sqlx::query_as(
                    "SELECT id, rule, subject, created_at, detail FROM alerts \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn claim_job(
                &self,
                job: &str,
                not_since: domain::Timestamp,
                now: domain::Timestamp,
            ) -> crate::Result<bool> {
                let claimed: Option<(String,)> = sqlx::query_as(
                    "INSERT INTO job_claims (job, claimed_at) VALUES ($1, $2) \
                     ON CONFLICT (job) DO UPDATE SET claimed_at = excluded.claimed_at \
                     WHERE job_claims.claimed_at < $3 RETURNING job",
                )
                .bind(job)
                .bind(now.millis())
                .bind(not_since.millis())
                .fetch_optional(self.writer())
                .await?;
                Ok(claimed.is_some())
            }
        }
    };
}

pub(crate) use impl_store;

/// Names a backend's sqlx database type for the shared SQL.
pub(crate) trait HasDb {
    type Db: sqlx::Database;
}
