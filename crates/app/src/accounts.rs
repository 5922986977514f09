//! Accounts: creating users, changing passwords and roles, deactivation.

use domain::{NewSecurityEvent, Role, SecurityEventKind as Kind, User, UserId, Username};
use secrecy::SecretString;
use store::NewUserRecord;

use crate::{ActiveSession, App, AppError, AppResult, LoginOutcome, RequestMeta, SessionStage};
use secrecy::ExposeSecret;

/// Whether an account's first password is its holder's to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPassword {
    /// Kept until its holder changes it (the operator's accounts, unless
    /// the operator says otherwise).
    AsGiven,
    /// To be changed by its holder at the first sign-in, before anything
    /// else: it was chosen by someone else.
    Temporary,
}

/// Who is acting: a signed-in user, or the operator at the command line
/// (who already holds the server's files and keys).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    User(&'a User),
    Operator,
}

impl Actor<'_> {
    pub(crate) fn require_admin(&self) -> AppResult<()> {
        match self {
            Actor::Operator => Ok(()),
            Actor::User(u) if u.role == Role::Admin => Ok(()),
            Actor::User(_) => Err(AppError::Forbidden),
        }
    }

    /// Who the store checks again inside the change's transaction.
    pub(crate) fn changed_by(&self) -> store::ChangedBy {
        match self {
            Actor::User(u) => store::ChangedBy::Admin(u.id),
            Actor::Operator => store::ChangedBy::Operator,
        }
    }

    fn stamp(&self, event: NewSecurityEvent) -> NewSecurityEvent {
        let actor = match self {
            Actor::User(u) => serde_json::json!({"actor": u.username.as_str()}),
            Actor::Operator => serde_json::json!({"actor": "operator (command line)"}),
        };
        NewSecurityEvent {
            detail: merge_json(&event.detail, actor),
            ..event
        }
    }
}

impl App {
    /// The account an administrator (or the operator) is about to change:
    /// `Forbidden` unless `actor` may manage accounts, `NotFound` when there
    /// is no such account.
    pub(crate) async fn account_to_manage(
        &self,
        actor: Actor<'_>,
        username: &str,
    ) -> AppResult<store::UserRecord> {
        actor.require_admin()?;
        let name = Username::parse(username)?;
        self.store
            .user_by_username(&name)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// As [`App::account_to_manage`], for a change an administrator never
    /// makes to their own account: `Conflict` with `own` when it is theirs.
    /// (The operator may change any.)
    pub(crate) async fn others_account_to_manage(
        &self,
        actor: Actor<'_>,
        username: &str,
        own: &str,
    ) -> AppResult<store::UserRecord> {
        let rec = self.account_to_manage(actor, username).await?;
        match actor {
            Actor::User(admin) if admin.id == rec.user.id => Err(AppError::Conflict(own.into())),
            _ => Ok(rec),
        }
    }

    /// Refuses a weak password with a reason the user can act on.
    pub(crate) fn password_policy(&self, password: &SecretString, username: &str) -> AppResult<()> {
        crypto::check_password_strength(password, &[username, "vellum"])
            .map_err(|reason| AppError::invalid("password", reason))
    }

    /// Creates an account (admins, or the operator). A password an
    /// administrator chose is temporary: its holder chooses their own at the
    /// first sign-in, before anything else (safety file, H017); the
    /// operator's accounts take the password as given (see
    /// [`App::create_user_with`]).
    pub async fn create_user(
        &self,
        actor: Actor<'_>,
        username: &str,
        role: Role,
        password: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        self.create_user_with(
            actor,
            username,
            role,
            password,
            FirstPassword::AsGiven,
            meta,
        )
        .await
    }

    /// As [`App::create_user`], the operator saying whether the password is
    /// temporary; an administrator's always is, whatever `first` says.
    pub async fn create_user_with(
        &self,
        actor: Actor<'_>,
        username: &str,
        role: Role,
        password: SecretString,
        first: FirstPassword,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        actor.require_admin()?;
        let username = Username::parse(username)?;
        self.password_policy(&password, username.as_str())?;
        let must_change_password =
            matches!(actor, Actor::User(_)) || first == FirstPassword::Temporary;
        let record = NewUserRecord {
            id: UserId(crypto::random::uuid_v4()),
            username,
            role,
            password_hash: self.hash_password(password).await?,
            must_change_password,
        };
        let event = meta.stamp(
            actor.stamp(
                NewSecurityEvent::new(Kind::UserCreated)
                    .user(record.id, record.username.as_str())
                    .detail(serde_json::json!({
                        "role": role.as_str(),
                        "must_change_password": must_change_password,
                    })),
            ),
        );
        let user = self
            .store
            .create_user(&record, actor.changed_by(), self.now(), &[event])
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => {
                    AppError::Conflict("that username is already taken".to_owned())
                }
                other => other.into(),
            })?;
        Ok(user)
    }

    /// Changes the signed-in user's password after checking the current one,
    /// and ends every other session of theirs. A session that must change
    /// its password before anything else (stage `Password`) is replaced by a
    /// full one — new session and CSRF tokens — in the same transaction, and
    /// given back (`None` for a session that was full already). The new
    /// password must differ from the current one.
    pub async fn change_password(
        &self,
        session: &ActiveSession,
        current: SecretString,
        new: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<Option<LoginOutcome>> {
        let user = session
            .user()
            .or_else(|_| session.partial_user(SessionStage::Password))?
            .clone();
        // Wrong current passwords count like failed sign-ins: a session
        // left open (or a stolen partial one) is no way to guess it.
        self.check_throttle(&user.username.as_str().to_lowercase(), meta)
            .await?;
        let rec = self
            .store
            .user_by_id(user.id)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let unchanged = crypto::constant_time_eq(
            current.expose_secret().as_bytes(),
            new.expose_secret().as_bytes(),
        );
        if !self.verify_password(current, rec.password_hash).await? {
            self.count_failure(&user, Kind::LoginFailed, meta).await?;
            return Err(AppError::invalid(
                "current_password",
                "is not your current password",
            ));
        }
        if unchanged {
            return Err(AppError::invalid(
                "new_password",
                "is your current password: choose a different one",
            ));
        }
        self.password_policy(&new, user.username.as_str())?;
        let hash = self.hash_password(new).await?;
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::PasswordChanged).user(user.id, user.username.as_str()),
        );
        let upgraded = (session.stage() == SessionStage::Password)
            .then(|| self.mint(Some(&user), SessionStage::Full));
        self.store
            .set_password(
                user.id,
                &hash,
                Some(session.token_hash()),
                upgraded.as_ref().map(|(_, record)| record),
                self.now(),
                &[event],
            )
            .await?;
        Ok(upgraded.map(|(session, _)| LoginOutcome {
            user,
            session,
            stage: SessionStage::Full,
        }))
    }

    /// Gives an account a new, temporary password (admins, or the operator) —
    /// for someone who forgot theirs: every session of the account ends, and
    /// its holder must choose their own at the next sign-in, after any
    /// second factor (H017). An administrator changes their own password on
    /// their account page instead. Two-factor sign-in and API tokens are
    /// left as they are.
    pub async fn reset_password(
        &self,
        actor: Actor<'_>,
        username: &str,
        password: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        let rec = self
            .others_account_to_manage(
                actor,
                username,
                "an administrator does not reset their own password: change it on your account \
                 page",
            )
            .await?;
        self.password_policy(&password, rec.user.username.as_str())?;
        let hash = self.hash_password(password).await?;
        let event = meta.stamp(
            actor.stamp(
                NewSecurityEvent::new(Kind::PasswordReset)
                    .user(rec.user.id, rec.user.username.as_str()),
            ),
        );
        self.store
            .reset_password(rec.user.id, &hash, actor.changed_by(), self.now(), &[event])
            .await?;
        Ok(rec.user)
    }

    /// Revokes every API token of an account (admins, or the operator): a
    /// token that may be in other hands, an integration retired, or a
    /// password reset for an account whose tokens should not outlive it.
    /// One `api_token_revoked` event (`"all": true`, who asked) in the same
    /// transaction. Sessions and everything else are left as they are; the
    /// holder can make new tokens. Gives the account and how many were
    /// revoked (none is not an error).
    pub async fn revoke_api_tokens_of(
        &self,
        actor: Actor<'_>,
        username: &str,
        meta: &RequestMeta,
    ) -> AppResult<(User, u64)> {
        let rec = self.account_to_manage(actor, username).await?;
        let event = meta.stamp(
            actor.stamp(
                NewSecurityEvent::new(Kind::ApiTokenRevoked)
                    .user(rec.user.id, rec.user.username.as_str())
                    .detail(serde_json::json!({"all": true})),
            ),
        );
        let revoked = self
            .store
            .revoke_all_api_tokens(
                &rec.user.id.to_string(),
                actor.changed_by(),
                self.now(),
                &[event],
            )
            .await?;
        Ok((rec.user, revoked))
    }

    /// Gives a staff account another role (admins, or the operator): every
    /// session of the account ends and every API token of it is revoked, so
    /// nothing granted under the old role outlives it; a role that requires
    /// two-factor sign-in enrols at the next sign-in. An administrator never
    /// changes their own role, and patient accounts — each linked to one
    /// patient's record — neither change role nor are made. The same role
    /// again changes nothing. Refused, writing nothing, when it would leave
    /// no active administrator, or when the administrator asking was
    /// demoted or deactivated by a change that committed first (two
    /// administrators demoting each other at once: one wins).
    pub async fn change_role(
        &self,
        actor: Actor<'_>,
        username: &str,
        role: Role,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        let rec = self
            .others_account_to_manage(
                actor,
                username,
                "an administrator cannot change their own role; ask another administrator",
            )
            .await?;
        if rec.user.role == Role::Patient || role == Role::Patient {
            return Err(AppError::Conflict(
                "patient accounts are linked to one patient's own record: a patient account \
                 cannot become a staff account, nor a staff account a patient account — create a \
                 separate account instead"
                    .into(),
            ));
        }
        if rec.user.role == role {
            return Ok(rec.user);
        }
        let event = meta.stamp(
            actor.stamp(
                NewSecurityEvent::new(Kind::RoleChanged)
                    .user(rec.user.id, rec.user.username.as_str())
                    .detail(serde_json::json!({
                        "from": rec.user.role.as_str(),
                        "to": role.as_str(),
                    })),
            ),
        );
        self.store
            .set_user_role(rec.user.id, role, actor.changed_by(), self.now(), &[event])
            .await?;
        Ok(User { role, ..rec.user })
    }

    /// Deactivates an account; its sessions end at once. Nothing is deleted.
    /// Refused, writing nothing, when it would leave no active
    /// administrator, or when the administrator asking was demoted or
    /// deactivated by a change that committed first.
    pub async fn deactivate_user(
        &self,
        actor: Actor<'_>,
        username: &str,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        let rec = self.account_to_manage(actor, username).await?;
        let event = meta.stamp(
            actor.stamp(
                NewSecurityEvent::new(Kind::UserDeactivated)
                    .user(rec.user.id, rec.user.username.as_str()),
            ),
        );
        self.store
            .set_user_active(rec.user.id, false, actor.changed_by(), self.now(), &[event])
            .await?;
        Ok(User {
            active: false,
            ..rec.user
        })
    }
}

impl App {
    /// Links a patient account to the one patient record it may read
    /// (admins only; a security event).
    pub async fn link_patient_user(
        &self,
        actor: Actor<'_>,
        username: &str,
        patient_id: &str,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        let rec = self.account_to_manage(actor, username).await?;
        if rec.user.role != Role::Patient {
            return Err(AppError::invalid(
                "username",
                "only a patient account can be linked to a patient record",
            ));
        }
        if self.store.patient(patient_id).await?.is_none() {
            return Err(AppError::invalid("patient_id", "no such patient"));
        }
        let event = meta.stamp(
            actor.stamp(
                NewSecurityEvent::new(Kind::PatientLinked)
                    .user(rec.user.id, rec.user.username.as_str())
                    .detail(serde_json::json!({"patient_id": patient_id})),
            ),
        );
        // The link and its event: one transaction, both or neither.
        self.store
            .link_patient_user(
                &rec.user.id.to_string(),
                Some(patient_id),
                actor.changed_by(),
                self.now(),
                &[event],
            )
            .await?;
        Ok(rec.user)
    }
}

/// `base` (a JSON object as text) with the keys of `extra` added.
fn merge_json(base: &str, extra: serde_json::Value) -> String {
    let mut obj = serde_json::from_str::<serde_json::Value>(base)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if let serde_json::Value::Object(more) = extra {
        obj.extend(more);
    }
    serde_json::Value::Object(obj).to_string()
}
