//! First run: a one-time link where the first administrator picks a
//! username and password.

use domain::{NewSecurityEvent, Role, SecurityEventKind as Kind, User, UserId, Username};
use secrecy::SecretString;
use store::NewUserRecord;

use crate::{App, AppError, AppResult, RequestMeta};

/// A setup link's secret part; shown once, on the server's console.
pub struct SetupLink {
    pub token: SecretString,
    pub expires_in_minutes: i64,
}

impl App {
    /// When no account exists yet, issues a single-use setup token valid for
    /// the configured time (1 hour by default); otherwise `None`.
    pub async fn issue_setup_link(&self) -> AppResult<Option<SetupLink>> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let token = crypto::random::password_reset_token();
        let now = self.now();
        self.store
            .create_setup_token(
                &crypto::token_hash(&token),
                now,
                now.plus_millis(self.config.setup_link_ttl_ms),
                &[NewSecurityEvent::new(Kind::SetupLinkIssued)],
            )
            .await?;
        Ok(Some(SetupLink {
            token: SecretString::from(token),
            expires_in_minutes: self.config.setup_link_ttl_ms / 60_000,
        }))
    }

    /// Whether a setup token may still be used.
    pub async fn setup_link_usable(&self, token: &str) -> AppResult<bool> {
        Ok(self
            .store
            .setup_token_usable(&crypto::token_hash(token), self.now())
            .await?)
    }

    /// Uses the setup token to create the first administrator. The token
    /// works once, within its time, and only while no account exists.
    pub async fn complete_setup(
        &self,
        token: &str,
        username: &str,
        password: SecretString,
        meta: &RequestMeta,
    ) -> AppResult<User> {
        if !self.setup_link_usable(token).await? {
            return Err(AppError::NotFound);
        }
        let username = Username::parse(username)?;
        self.password_policy(&password, username.as_str())?;
        let record = NewUserRecord {
            id: UserId(crypto::random::uuid_v4()),
            username,
            role: Role::Admin,
            // Chosen by its holder through the setup link.
            password_hash: self.hash_password(password).await?,
            must_change_password: false,
        };
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::SetupCompleted)
                .user(record.id, record.username.as_str())
                .detail(serde_json::json!({"role": "admin"})),
        );
        Ok(self
            .store
            .complete_setup(&crypto::token_hash(token), &record, self.now(), &[event])
            .await?)
    }
}
