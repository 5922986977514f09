//! Server-side sessions, login, logout, and the CSRF double-submit check.

use domain::{NewSecurityEvent, SecurityEventKind as Kind, User, Username};
use secrecy::{ExposeSecret, SecretString};
use store::{SecondFactor, SessionRecord, SessionStage};

use crate::{App, AppError, AppResult, RequestMeta};

/// How often (at most) a session's last-seen time is written.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A freshly issued session: the two secrets go to the client once (the
/// session token in an HttpOnly cookie, the CSRF token in a readable one)
/// and only their hash and MAC stay on the server.
pub struct NewSession {
    pub token: SecretString,
    pub csrf_token: SecretString,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSession([REDACTED])")
    }
}

/// The session a request presented, found valid.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub record: SessionRecord,
    /// `None` for a pre-login session.
    pub user: Option<User>,
}

impl ActiveSession {
    pub fn token_hash(&self) -> &str {
        &self.record.token_hash
    }

    /// How far sign-in got: only a `Full` session with a user is signed in.
    pub fn stage(&self) -> SessionStage {
        self.record.stage
    }

    /// The fully signed-in user, or `Unauthenticated` (no user yet, or only
    /// the password so far).
    pub fn user(&self) -> AppResult<&User> {
        match (&self.user, self.record.stage) {
            (Some(u), SessionStage::Full) => Ok(u),
            _ => Err(AppError::Unauthenticated),
        }
    }

    /// The user behind a partial session at `stage`.
    pub fn partial_user(&self, stage: SessionStage) -> AppResult<&User> {
        match &self.user {
            Some(u) if self.record.stage == stage => Ok(u),
            _ => Err(AppError::Unauthenticated),
        }
    }
}

/// The outcome of a double-submit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfCheck {
    Valid,
    /// No token in the request (header or form field).
    Missing,
    /// A token, but not this session's, or header and cookie differ.
    Invalid,
}

impl CsrfCheck {
    pub fn reason(self) -> &'static str {
        match self {
            CsrfCheck::Valid => "valid",
            CsrfCheck::Missing => "token missing",
            CsrfCheck::Invalid => "token invalid",
        }
    }
}

pub struct LoginOutcome {
    pub user: User,
    pub session: NewSession,
    /// `Full`, or the step still to come: a TOTP code, or enrolment.
    pub stage: SessionStage,
}

impl App {
    fn csrf_tag(&self, csrf_token: &str) -> String {
        crypto::hmac_sha256_hex(self.csrf_key.expose_secret(), csrf_token.as_bytes())
    }

    pub(crate) fn mint(
        &self,
        user: Option<&User>,
        stage: SessionStage,
    ) -> (NewSession, SessionRecord) {
        let token = crypto::random::session_token();
        let csrf = crypto::random::csrf_token();
        let now = self.now();
        let record = SessionRecord {
            token_hash: crypto::token_hash(&token),
            user_id: user.map(|u| u.id),
            csrf_tag: self.csrf_tag(&csrf),
            created_at: now,
            last_seen_at: now,
            stage,
            issued_role: user.map(|u| u.role),
        };
        (
            NewSession {
                token: SecretString::from(token),
                csrf_token: SecretString::from(csrf),
            },
            record,
        )
    }

    /// A pre-login session: it carries a CSRF token so that the login form
    /// itself is protected.
    pub async fn start_anonymous_session(&self) -> AppResult<NewSession> {
        let (session, record) = self.mint(None, SessionStage::Full);
        self.store.insert_session(&record).await?;
        Ok(session)
    }

    /// Finds the session a token names, ending it when it has expired, its
    /// user is deactivated, or its user's role is not the one it was issued
    /// under. Writes last-seen at most once a minute.
    pub async fn session(&self, token: &str) -> AppResult<Option<ActiveSession>> {
        let hash = crypto::token_hash(token);
        let Some((record, user)) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        let now = self.now();
        let idle = now.millis() - record.last_seen_at.millis() > self.config.idle_timeout_ms;
        let old = now.millis() - record.created_at.millis() > self.config.absolute_timeout_ms;
        if idle || old {
            self.store.end_session(&hash, now, &[]).await?;
            return Ok(None);
        }
        let user = match (record.user_id, user) {
            (None, _) => None,
            // A session issued under another role than the account's now
            // raced a role change (which ends every session it finds):
            // ended like the rest.
            (Some(_), Some(u)) if u.active && record.issued_role == Some(u.role) => Some(u),
            (Some(_), Some(u)) if u.active => {
                // Only a sign-in that raced a role change leaves one.
                tracing::warn!(
                    user = %u.username.as_str(),
                    issued = ?record.issued_role,
                    now = %u.role,
                    "a session issued under another role than the account's was ended"
                );
                self.store.end_session(&hash, now, &[]).await?;
                return Ok(None);
            }
            (Some(_), _) => {
                self.store.end_session(&hash, now, &[]).await?;
                return Ok(None);
            }
        };
        if now.millis() - record.last_seen_at.millis() >= TOUCH_EVERY_MS {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(Some(ActiveSession { record, user }))
    }

    /// The double-submit check: the token in the header (or form field) must
    /// equal the one in the CSRF cookie, and its MAC the one in the session.
    /// Both comparisons take constant time.
    pub fn check_csrf(
        &self,
        session: Option<&ActiveSession>,
        presented: Option<&str>,
        cookie: Option<&str>,
    ) -> CsrfCheck {
        let Some(presented) = presented.filter(|t| !t.is_empty()) else {
            return CsrfCheck::Missing;
        };
        let (Some(session), Some(cookie)) = (session, cookie) else {
            return CsrfCheck::Invalid;
        };
        let same_as_cookie = crypto::constant_time_eq(presented.as_bytes(), cookie.as_bytes());
        let tag = self.csrf_tag(presented);
        let same_as_session =
            crypto::constant_time_eq(tag.as_bytes(), session.record.csrf_tag.as_bytes());
        if same_as_cookie & same_as_session {
            CsrfCheck::Valid
        } else {
            CsrfCheck::Invalid
        }
    }

    /// Whether `cookie` is the CSRF token of `session` (so it may be shown
    /// again, e.g. in a form, without minting a new one).
    pub fn csrf_cookie_matches(&self, session: &ActiveSession, cookie: &str) -> bool {
        let tag = self.csrf_tag(cookie);
        crypto::constant_time_eq(tag.as_bytes(), session.record.csrf_tag.as_bytes())
    }

    /// Gives an existing session a new CSRF token.
    pub async fn reissue_csrf(&self, session: &ActiveSession) -> AppResult<SecretString> {
        let csrf = crypto::random::csrf_token();
        self.store
            .set_session_csrf(session.token_hash(), &self.csrf_tag(&csrf))
            .await?;
        Ok(SecretString::from(csrf))
    }

    /// Checks a username and password. Unknown users, deactivated users and
    /// wrong passwords get the same answer after the same work. Failures are
    /// counted per account and per IP in the database; at the limit the
    /// answer is `RateLimited` before any password is checked.
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        replaces: Option<&ActiveSession>,
        meta: &RequestMeta,
    ) -> AppResult<LoginOutcome> {
        let now = self.now();
        let key = username.trim().to_lowercase();
        self.check_throttle(&key, meta).await?;

        let found = match Username::parse(username) {
            Ok(name) => self.store.user_by_username(&name).await?,
            Err(_) => None,
        };
        let ok = match &found {
            Some(rec) => {
                let ok = self
                    .verify_password(password, rec.password_hash.clone())
                    .await?;
                ok && rec.user.active
            }
            None => {
                self.verify_dummy(password).await?;
                false
            }
        };
        let Some(rec) = found.filter(|_| ok) else {
            let event = meta.stamp(NewSecurityEvent::new(Kind::LoginFailed).username(&key));
            self.store
                .record_login_failure(&key, &meta.ip, now, &[event])
                .await?;
            return Err(AppError::InvalidCredentials);
        };

        // The password is right. Two-factor sign-in, when on or required,
        // gets a partial session that can do only that next step.
        let totp = self.store.totp_state(rec.user.id).await?;
        let stage = if totp.secret.is_some() {
            SessionStage::Totp
        } else if self.config.require_totp_for.contains(&rec.user.role) {
            SessionStage::Enrol
        } else {
            Self::signed_in_stage(&rec)
        };
        let mut event = NewSecurityEvent::new(Kind::LoginSucceeded)
            .user(rec.user.id, rec.user.username.as_str());
        if stage != SessionStage::Full {
            event = event.detail(serde_json::json!({"stage": stage.as_str()}));
        }
        self.start(
            replaces.map(|s| s.token_hash()),
            rec.user,
            stage,
            &[meta.stamp(event)],
        )
        .await
    }

    /// Issues a new session at `stage` for `user`, replacing `replaces`.
    pub(crate) async fn start(
        &self,
        replaces: Option<&str>,
        user: User,
        stage: SessionStage,
        events: &[NewSecurityEvent],
    ) -> AppResult<LoginOutcome> {
        // Nothing to spend: the session always starts.
        self.start_with(replaces, user, stage, None, events)
            .await?
            .ok_or(AppError::Unauthenticated)
    }

    /// The second step of a sign-in: `partial`'s session is replaced by a
    /// signed-in one at `stage` ([`App::stage_after_second_factor`]),
    /// spending `factor` in the same transaction; `None`, with nothing
    /// written, when that factor was spent already or `partial` has ended.
    pub(crate) async fn start_spending(
        &self,
        partial: &ActiveSession,
        user: User,
        stage: SessionStage,
        factor: SecondFactor<'_>,
        events: &[NewSecurityEvent],
    ) -> AppResult<Option<LoginOutcome>> {
        let replaces = Some(partial.token_hash());
        self.start_with(replaces, user, stage, Some(factor), events)
            .await
    }

    /// The stage of a session whose every factor is done: `Full`, or
    /// `Password` while the account's password is a temporary one an
    /// administrator chose (H017).
    fn signed_in_stage(rec: &store::UserRecord) -> SessionStage {
        if rec.must_change_password {
            SessionStage::Password
        } else {
            SessionStage::Full
        }
    }

    /// [`App::signed_in_stage`] for `user` as the store has it now.
    pub(crate) async fn stage_after_second_factor(&self, user: &User) -> AppResult<SessionStage> {
        let rec = self
            .store
            .user_by_id(user.id)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        Ok(Self::signed_in_stage(&rec))
    }

    async fn start_with(
        &self,
        replaces: Option<&str>,
        user: User,
        stage: SessionStage,
        spends: Option<SecondFactor<'_>>,
        events: &[NewSecurityEvent],
    ) -> AppResult<Option<LoginOutcome>> {
        let (session, record) = self.mint(Some(&user), stage);
        let started = self
            .store
            .start_session(
                replaces,
                &record,
                &user.username,
                spends,
                self.now(),
                events,
            )
            .await?;
        Ok(started.then_some(LoginOutcome {
            user,
            session,
            stage,
        }))
    }

    /// Refuses (429) when the account or the address has had too many
    /// failures in the window. `key` is the lower-cased username.
    pub(crate) async fn check_throttle(&self, key: &str, meta: &RequestMeta) -> AppResult<()> {
        self.check_throttle_counting(key, meta, false).await
    }

    /// As [`App::check_throttle`]; with `this_one_counted`, the attempt
    /// being made is already among the failures and may still go ahead.
    pub(crate) async fn check_throttle_counting(
        &self,
        key: &str,
        meta: &RequestMeta,
        this_one_counted: bool,
    ) -> AppResult<()> {
        let slack = i64::from(this_one_counted);
        let now = self.now();
        let window = self
            .store
            .login_failures_since(key, &meta.ip, now.minus_millis(self.config.login_window_ms))
            .await?;
        let over_account = window.account >= self.config.max_failures_per_account + slack;
        let over_ip = window.ip >= self.config.max_failures_per_ip + slack;
        if over_account || over_ip {
            let oldest = [
                window.account_oldest.filter(|_| over_account),
                window.ip_oldest.filter(|_| over_ip),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now);
            let free_at = oldest.plus_millis(self.config.login_window_ms);
            let retry_after_secs =
                u64::try_from((free_at.millis() - now.millis()).max(1000) / 1000).unwrap_or(1);
            let event = meta.stamp(NewSecurityEvent::new(Kind::LoginRateLimited).username(key));
            self.store.append_events(now, &[event]).await?;
            return Err(AppError::RateLimited { retry_after_secs });
        }

        Ok(())
    }

    /// Ends the session on the server; its cookie opens nothing afterwards.
    pub async fn logout(&self, session: &ActiveSession, meta: &RequestMeta) -> AppResult<()> {
        let mut event = NewSecurityEvent::new(Kind::Logout);
        if let Some(u) = &session.user {
            event = event.user(u.id, u.username.as_str());
        }
        self.store
            .end_session(session.token_hash(), self.now(), &[meta.stamp(event)])
            .await?;
        Ok(())
    }

    /// Ends every session of the signed-in user except this one.
    pub async fn end_other_sessions(
        &self,
        session: &ActiveSession,
        meta: &RequestMeta,
    ) -> AppResult<u64> {
        let user = session.user()?;
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::Logout)
                .user(user.id, user.username.as_str())
                .detail(serde_json::json!({"scope": "other_sessions"})),
        );
        Ok(self
            .store
            .end_user_sessions(user.id, Some(session.token_hash()), self.now(), &[event])
            .await?)
    }

    pub(crate) async fn verify_password(
        &self,
        password: SecretString,
        phc: String,
    ) -> AppResult<bool> {
        let hasher = self.hasher.clone();
        self.off_runtime(move || hasher.verify(&password, &phc))
            .await
    }

    async fn verify_dummy(&self, password: SecretString) -> AppResult<bool> {
        let hasher = self.hasher.clone();
        self.off_runtime(move || hasher.verify_dummy(&password))
            .await
    }

    pub(crate) async fn hash_password(&self, password: SecretString) -> AppResult<String> {
        let hasher = self.hasher.clone();
        self.off_runtime(move || hasher.hash(&password))
            .await?
            .map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Runs CPU-heavy hashing on the blocking pool, at most one job per core
    /// at a time, so logins never starve the request-serving threads.
    async fn off_runtime<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> AppResult<T> {
        let permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::Unavailable)?;
        // The permit goes with the job, so it is held until the hashing
        // ends even when the request waiting for it is dropped (a client
        // gone, a deadline passed): the bound holds under a login flood.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| AppError::Internal(format!("hashing task: {e}")))
    }
}
