//! Two-factor sign-in with TOTP: set up, confirm, sign in with a code or a
//! recovery code, turn off, admin reset. The secret is sealed by the keyring
//! before it reaches the store and opened only to check a code.

use crypto::totp::{self, CodeRejected, TotpSecret};
use domain::{NewSecurityEvent, SecurityEventKind as Kind, User};
use secrecy::{ExposeSecret, SecretString};
use store::{SecondFactor, SessionStage};

use crate::sessions::{ActiveSession, LoginOutcome};
use crate::{App, AppError, AppResult, RequestMeta};

/// Recovery codes issued when two-factor sign-in is turned on.
pub const RECOVERY_CODES: usize = 10;

/// What setup shows once: the URI (and so the QR code) for the app.
pub struct TotpSetup {
    pub otpauth_uri: SecretString,
}

/// Turning two-factor sign-in on: the recovery codes, shown once, and — for
/// a session that was enrolling — the full session that replaces it.
pub struct TotpEnabled {
    pub recovery_codes: Vec<SecretString>,
    pub session: Option<LoginOutcome>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpStatus {
    pub enabled: bool,
    pub pending: bool,
    pub recovery_codes_left: i64,
    pub required: bool,
}

/// The second factor a user presents.
pub enum TotpCode {
    Code(SecretString),
    Recovery(SecretString),
}

fn aad(column: &str, user: &User) -> String {
    format!("users.{column}:{}", user.id)
}

impl App {
    async fn seal(&self, plaintext: &[u8], aad: &str) -> AppResult<String> {
        self.refresh_keyring().await?;
        self.keyring()
            .seal(plaintext, aad)
            .map_err(|e| AppError::Internal(format!("sealing: {e}")))
    }

    /// Opens a sealed secret. A key this server does not hold yet (another
    /// server sealed under a newly rotated key) makes it re-read the key
    /// source once before giving up.
    async fn open_secret(&self, sealed: &str, aad: &str) -> AppResult<TotpSecret> {
        let mut opened = self.keyring().open(sealed, aad);
        if matches!(opened, Err(crypto::SealError::UnknownKey(_))) {
            self.refresh_keyring().await?;
            opened = self.keyring().open(sealed, aad);
        }
        let plain = opened
            .map_err(|e| AppError::Internal(format!("opening a TOTP secret ({aad}): {e}")))?;
        TotpSecret::from_bytes(&plain)
            .ok_or_else(|| AppError::Internal(format!("TOTP secret ({aad}) has the wrong length")))
    }

    fn unix_secs(&self) -> i64 {
        self.now().millis().div_euclid(1000)
    }

    fn recovery_mac(&self, code: &str) -> String {
        crypto::hmac_sha256_hex(
            self.recovery_key.expose_secret(),
            totp::normalise_recovery_code(code).as_bytes(),
        )
    }

    /// The user a session may enrol for: a full session, or one that must
    /// enrol before anything else.
    fn enrolling_user(session: &ActiveSession) -> AppResult<&User> {
        session
            .user()
            .or_else(|_| session.partial_user(SessionStage::Enrol))
    }

    /// Wrong password or code on an account page: counted like a failed
    /// login, so these pages cannot be used to guess either.
    pub(crate) async fn count_failure(
        &self,
        user: &User,
        kind: Kind,
        meta: &RequestMeta,
    ) -> AppResult<()> {
        let key = user.username.as_str().to_lowercase();
        let event = meta.stamp(NewSecurityEvent::new(kind).user(user.id, user.username.as_str()));
        self.store
            .record_login_failure(&key, &meta.ip, self.now(), &[event])
            .await?;
        Ok(())
    }

    async fn check_password(
        &self,
        user: &User,
        password: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<()> {
        let key = user.username.as_str().to_lowercase();
        self.check_throttle(&key, meta).await?;
        let rec = self
            .store
            .user_by_id(user.id)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        if self.verify_password(password, rec.password_hash).await? {
            Ok(())
        } else {
            self.count_failure(user, Kind::LoginFailed, meta).await?;
            Err(AppError::InvalidCredentials)
        }
    }

    /// Counts a code attempt as a failed sign-in *before* the code is
    /// checked, then applies the limits: parallel guesses cannot all slip
    /// in under the limit. A complete sign-in clears the count.
    async fn begin_code_attempt(&self, user: &User, meta: &RequestMeta) -> AppResult<()> {
        let key = user.username.as_str().to_lowercase();
        self.check_throttle(&key, meta).await?;
        self.store
            .record_login_failure(&key, &meta.ip, self.now(), &[])
            .await?;
        // Counted again with this attempt in: a burst of parallel guesses
        // that all passed the first check stops here.
        self.check_throttle_counting(&key, meta, true).await
    }

    /// A right code: the attempt (and earlier failures) are forgotten, as
    /// after a complete sign-in.
    async fn code_attempt_succeeded(&self, user: &User) -> AppResult<()> {
        let key = user.username.as_str().to_lowercase();
        Ok(self.store.clear_login_failures(&key).await?)
    }

    async fn record_user_event(
        &self,
        user: &User,
        kind: Kind,
        meta: &RequestMeta,
    ) -> AppResult<()> {
        let event = meta.stamp(NewSecurityEvent::new(kind).user(user.id, user.username.as_str()));
        self.store.append_events(self.now(), &[event]).await?;
        Ok(())
    }

    /// Refuses to set up a second authenticator over a working one: that
    /// needs turning it off first, with the password and a current code.
    async fn refuse_if_enabled(&self, user: &User) -> AppResult<store::TotpState> {
        let state = self.store.totp_state(user.id).await?;
        if state.secret.is_some() {
            return Err(AppError::Conflict(
                "two-factor sign-in is already on. To move to a new authenticator, turn it off \
                 first (password and a current code), then set it up again"
                    .into(),
            ));
        }
        Ok(state)
    }

    /// Checks a code against the user's active secret, counting the attempt
    /// toward the login limits; gives its time step, not yet spent. A wrong
    /// code and a replay of one already spent are recorded.
    async fn check_current_code(
        &self,
        user: &User,
        sealed: &str,
        last_step: Option<i64>,
        code: &SecretString,
        meta: &RequestMeta,
        partial: Option<&ActiveSession>,
    ) -> AppResult<i64> {
        let secret = self.open_secret(sealed, &aad("totp_secret", user)).await?;
        self.begin_code_attempt(user, meta).await?;
        match secret.verify(code.expose_secret(), self.unix_secs(), last_step) {
            Ok(step) => Ok(step),
            Err(CodeRejected::Replayed) => Err(self.code_replayed(user, meta, partial).await),
            Err(CodeRejected::Wrong) => {
                self.record_user_event(user, Kind::TotpFailed, meta).await?;
                Err(AppError::InvalidCode)
            }
        }
    }

    /// For a change to a working second factor: the password, then a
    /// current code from it; the code's step, to be spent with the change.
    async fn check_password_and_code(
        &self,
        user: &User,
        password: SecretString,
        code: &SecretString,
        meta: &RequestMeta,
    ) -> AppResult<i64> {
        self.check_password(user, password, meta).await?;
        let state = self.store.totp_state(user.id).await?;
        let sealed = state.secret.ok_or_else(|| {
            AppError::Conflict("two-factor sign-in is not on for this account".into())
        })?;
        self.check_current_code(user, &sealed, state.last_step, code, meta, None)
            .await
    }

    /// A code whose step was spent already: recorded, and refused. When it
    /// would complete the `partial` sign-in and that has ended meanwhile,
    /// it is most likely the same code sent twice at once in one sign-in (a
    /// double-click: spending the step ends the partial session in the
    /// same transaction), so the answer is "signed out" rather than "someone
    /// may have seen your code"; the event is still recorded, marked
    /// `sign_in_ended`, as a replay raced against its own sign-out looks
    /// the same.
    async fn code_replayed(
        &self,
        user: &User,
        meta: &RequestMeta,
        partial: Option<&ActiveSession>,
    ) -> AppError {
        let ended = match partial {
            Some(p) => match self.store.session(p.token_hash()).await {
                Ok(found) => found.is_none(),
                Err(e) => return e.into(),
            },
            None => false,
        };
        let mut event =
            NewSecurityEvent::new(Kind::TotpReplayRefused).user(user.id, user.username.as_str());
        if ended {
            event = event.detail(serde_json::json!({"sign_in_ended": true}));
        }
        match self
            .store
            .append_events(self.now(), &[meta.stamp(event)])
            .await
        {
            Ok(()) if ended => AppError::Unauthenticated,
            Ok(()) => AppError::CodeReplayed,
            Err(e) => e.into(),
        }
    }

    /// Starts setting up two-factor sign-in: a new 160-bit secret, sealed,
    /// kept as pending until a code from it confirms it.
    pub async fn totp_setup(
        &self,
        session: &ActiveSession,
        password: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<TotpSetup> {
        let user = Self::enrolling_user(session)?;
        self.refuse_if_enabled(user).await?;
        self.check_password(user, password, meta).await?;
        let secret = TotpSecret::generate();
        let sealed = self
            .seal(secret.expose_bytes(), &aad("totp_pending", user))
            .await?;
        self.store.set_totp_pending(user.id, Some(&sealed)).await?;
        Ok(TotpSetup {
            otpauth_uri: secret.otpauth_uri(&self.config.totp_issuer, user.username.as_str()),
        })
    }

    /// Confirms the pending secret with a code from it: two-factor sign-in
    /// is on, the code counts as used, ten recovery codes are issued, every
    /// other session ends. An enrolling session becomes a full one.
    pub async fn totp_enable(
        &self,
        session: &ActiveSession,
        code: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<TotpEnabled> {
        let user = Self::enrolling_user(session)?.clone();
        let state = self.refuse_if_enabled(&user).await?;
        let pending = state.pending.ok_or_else(|| {
            AppError::Conflict("set up two-factor sign-in first (no secret is waiting)".into())
        })?;
        let secret = self
            .open_secret(&pending, &aad("totp_pending", &user))
            .await?;
        self.begin_code_attempt(&user, meta).await?;
        let step = match secret.verify(code.expose_secret(), self.unix_secs(), None) {
            Ok(step) => step,
            Err(_) => {
                self.record_user_event(&user, Kind::TotpFailed, meta)
                    .await?;
                return Err(AppError::InvalidCode);
            }
        };
        self.code_attempt_succeeded(&user).await?;
        let sealed = self
            .seal(secret.expose_bytes(), &aad("totp_secret", &user))
            .await?;
        let (codes, hashes) = self.new_recovery_codes();
        let event = meta
            .stamp(NewSecurityEvent::new(Kind::TotpEnabled).user(user.id, user.username.as_str()));
        // An enrolling session becomes a signed-in one in the same
        // transaction: never two-factor on with the session still enrolling.
        // Only an enrolling session asks whether the password step is still
        // to come; a full one turning it on keeps its stage.
        let upgraded = if session.stage() == SessionStage::Enrol {
            let signed_in = self.stage_after_second_factor(&user).await?;
            Some(self.mint(Some(&user), signed_in))
        } else {
            None
        };
        self.store
            .enable_totp(
                user.id,
                &sealed,
                step,
                &hashes,
                Some(session.token_hash()),
                upgraded.as_ref().map(|(_, record)| record),
                self.now(),
                &[event],
            )
            .await?;
        let upgraded = upgraded.map(|(session, record)| LoginOutcome {
            user,
            session,
            stage: record.stage,
        });
        Ok(TotpEnabled {
            recovery_codes: codes,
            session: upgraded,
        })
    }

    /// The second step of signing in: a current code (or an unused recovery
    /// code) turns the partial session into a full one, with a new session
    /// token and CSRF token. Wrong codes count toward the login limits; a
    /// replayed code is refused and recorded.
    pub async fn totp_login(
        &self,
        session: &ActiveSession,
        code: TotpCode,
        meta: &RequestMeta,
    ) -> AppResult<LoginOutcome> {
        let user = session.partial_user(SessionStage::Totp)?.clone();
        let state = self.store.totp_state(user.id).await?;
        let sealed = state.secret.ok_or(AppError::Unauthenticated)?;
        let stage = self.stage_after_second_factor(&user).await?;
        let login = |second: &str| {
            let mut detail = serde_json::json!({"second_factor": second});
            if stage != SessionStage::Full {
                detail["stage"] = stage.as_str().into();
            }
            meta.stamp(
                NewSecurityEvent::new(Kind::LoginSucceeded)
                    .user(user.id, user.username.as_str())
                    .detail(detail),
            )
        };
        // The code is spent in the transaction that starts the session:
        // never one without the other.
        match code {
            TotpCode::Code(code) => {
                let step = self
                    .check_current_code(&user, &sealed, state.last_step, &code, meta, Some(session))
                    .await?;
                let events = [login("totp")];
                let spends = SecondFactor::Step(step);
                match self
                    .start_spending(session, user.clone(), stage, spends, &events)
                    .await?
                {
                    Some(outcome) => Ok(outcome),
                    None => Err(self.code_replayed(&user, meta, Some(session)).await),
                }
            }
            TotpCode::Recovery(code) => {
                self.begin_code_attempt(&user, meta).await?;
                let mac = self.recovery_mac(code.expose_secret());
                let events = [
                    login("recovery_code"),
                    meta.stamp(
                        NewSecurityEvent::new(Kind::RecoveryCodeUsed)
                            .user(user.id, user.username.as_str()),
                    ),
                ];
                let spends = SecondFactor::RecoveryCode(&mac);
                match self
                    .start_spending(session, user.clone(), stage, spends, &events)
                    .await?
                {
                    Some(outcome) => Ok(outcome),
                    None => {
                        self.record_user_event(&user, Kind::TotpFailed, meta)
                            .await?;
                        Err(AppError::InvalidCode)
                    }
                }
            }
        }
    }

    /// Turns two-factor sign-in off; needs the password and a current code.
    /// Every other session ends.
    pub async fn totp_disable(
        &self,
        session: &ActiveSession,
        password: SecretString,
        code: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<()> {
        let user = session.user()?.clone();
        if self.config.require_totp_for.contains(&user.role) {
            return Err(AppError::Conflict(format!(
                "{}s must use two-factor sign-in, so it cannot be turned off. If you lost your \
                 phone, an administrator can reset it and you set it up again",
                user.role.as_str()
            )));
        }
        let step = self
            .check_password_and_code(&user, password, &code, meta)
            .await?;
        let event = meta
            .stamp(NewSecurityEvent::new(Kind::TotpDisabled).user(user.id, user.username.as_str()));
        // The code is spent in the transaction that turns it off.
        if !self
            .store
            .disable_totp(
                user.id,
                Some(step),
                Some(session.token_hash()),
                store::ChangedBy::Holder,
                self.now(),
                &[event],
            )
            .await?
        {
            return Err(self.code_replayed(&user, meta, None).await);
        }
        self.code_attempt_succeeded(&user).await
    }

    /// A new set of recovery codes replacing every old one, used or not;
    /// needs the password and a current code (spent here). For a user who
    /// has used up their codes, or fears someone saw them — so, as with any
    /// change to the second factor, every other session of the user ends
    /// (one may have been started with a code someone saw). The new codes
    /// are given back this once; only their MACs are kept.
    pub async fn totp_new_recovery_codes(
        &self,
        session: &ActiveSession,
        password: SecretString,
        code: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<Vec<SecretString>> {
        let user = session.user()?.clone();
        let step = self
            .check_password_and_code(&user, password, &code, meta)
            .await?;
        let (codes, hashes) = self.new_recovery_codes();
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::RecoveryCodesReplaced)
                .user(user.id, user.username.as_str()),
        );
        // The code is spent in the transaction that replaces the codes.
        if !self
            .store
            .replace_recovery_codes(
                user.id,
                step,
                &hashes,
                Some(session.token_hash()),
                self.now(),
                &[event],
            )
            .await?
        {
            return Err(self.code_replayed(&user, meta, None).await);
        }
        // The old codes are gone now: the new ones must reach the caller
        // even if the failed-attempt count cannot be cleared (it then only
        // runs out on its own).
        if let Err(e) = self.code_attempt_succeeded(&user).await {
            tracing::warn!(error = %e, "new recovery codes issued; the failed-attempt count was not cleared");
        }
        Ok(codes)
    }

    /// Ten new recovery codes and their MACs, in the same order.
    fn new_recovery_codes(&self) -> (Vec<SecretString>, Vec<String>) {
        let codes: Vec<SecretString> = (0..RECOVERY_CODES).map(|_| totp::recovery_code()).collect();
        let hashes = codes
            .iter()
            .map(|c| self.recovery_mac(c.expose_secret()))
            .collect();
        (codes, hashes)
    }

    /// An administrator resets a user's two-factor sign-in (a lost phone):
    /// it is off, the user's sessions end, and — if their role requires it —
    /// they enrol again at their next login.
    pub async fn admin_reset_totp(
        &self,
        admin: &User,
        username: &str,
        meta: &RequestMeta,
    ) -> AppResult<()> {
        let target = self
            .others_account_to_manage(
                crate::Actor::User(admin),
                username,
                "an administrator cannot reset their own two-factor sign-in; ask another \
                 administrator",
            )
            .await?;
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::TotpReset)
                .user(target.user.id, target.user.username.as_str())
                .detail(serde_json::json!({"by": admin.username.as_str()})),
        );
        self.store
            .disable_totp(
                target.user.id,
                None,
                None,
                crate::Actor::User(admin).changed_by(),
                self.now(),
                &[event],
            )
            .await?;
        Ok(())
    }

    /// Whether two-factor sign-in is on, and how many recovery codes are left.
    pub async fn totp_status(&self, session: &ActiveSession) -> AppResult<TotpStatus> {
        let user = Self::enrolling_user(session)?;
        let state = self.store.totp_state(user.id).await?;
        Ok(TotpStatus {
            enabled: state.secret.is_some(),
            pending: state.pending.is_some(),
            recovery_codes_left: self.store.unused_recovery_codes(user.id).await?,
            required: self.config.require_totp_for.contains(&user.role),
        })
    }
}
