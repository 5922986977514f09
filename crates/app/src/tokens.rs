//! API tokens for integrations: `Authorization: Bearer vlm_…`.
//!
//! A token acts as the user who made it, within its scope (read-only or
//! read-write), until it expires or is revoked. It is shown once; only its
//! SHA-256 is stored. Bearer requests carry no ambient credential (no
//! cookie), so a forged cross-site request cannot use one.

use domain::{NewSecurityEvent, SecurityEventKind as Kind, Timestamp, User};
use secrecy::SecretString;
use serde::Serialize;
use store::ApiTokenRow;

use crate::{App, AppError, AppResult, RequestMeta};

const DAY_MS: i64 = 86_400_000;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    Read,
    ReadWrite,
}

impl TokenScope {
    pub fn parse(s: &str) -> AppResult<Self> {
        match s {
            "read" => Ok(TokenScope::Read),
            "read-write" => Ok(TokenScope::ReadWrite),
            _ => Err(AppError::invalid(
                "scope",
                "must be \"read\" or \"read-write\"",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::ReadWrite => "read-write",
        }
    }
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl From<ApiTokenRow> for TokenView {
    fn from(r: ApiTokenRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            scope: r.scope,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            last_used_at: r.last_used_at.map(Timestamp),
            revoked_at: r.revoked_at.map(Timestamp),
        }
    }
}

/// Who a valid bearer token speaks for.
#[derive(Debug, Clone)]
pub struct TokenPrincipal {
    pub user: User,
    pub scope: TokenScope,
    pub token_id: String,
}

impl App {
    /// Issues a token; the secret is in the answer once and nowhere else.
    pub async fn create_api_token(
        &self,
        user: &User,
        name: &str,
        scope: TokenScope,
        expires_in_days: Option<i64>,
        meta: &RequestMeta,
    ) -> AppResult<(SecretString, TokenView)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::invalid("name", "must be 1 to 100 characters"));
        }
        let days = expires_in_days.unwrap_or(90);
        if !(1..=365).contains(&days) {
            return Err(AppError::invalid(
                "expires_in_days",
                "must be between 1 and 365",
            ));
        }
        let token = crypto::random::api_token();
        let now = self.now();
        let row = ApiTokenRow {
            id: crypto::random::uuid_v4().to_string(),
            user_id: user.id.to_string(),
            name: name.to_owned(),
            token_hash: crypto::token_hash(&token),
            scope: scope.as_str().to_owned(),
            created_at: now.millis(),
            expires_at: now.plus_millis(days * DAY_MS).millis(),
            last_used_at: None,
            revoked_at: None,
            issued_role: user.role.as_str().to_owned(),
        };
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::ApiTokenCreated)
                .user(user.id, user.username.as_str())
                .detail(serde_json::json!({"token_id": row.id, "scope": row.scope, "expires_in_days": days})),
        );
        // The token and its event: one transaction, both or neither.
        self.store.create_api_token(&row, now, &[event]).await?;
        Ok((SecretString::from(token), row.into()))
    }

    pub async fn api_tokens(&self, user: &User) -> AppResult<Vec<TokenView>> {
        Ok(self
            .store
            .list_api_tokens(&user.id.to_string())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn revoke_api_token(
        &self,
        user: &User,
        id: &str,
        meta: &RequestMeta,
    ) -> AppResult<()> {
        let now = self.now();
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::ApiTokenRevoked)
                .user(user.id, user.username.as_str())
                .detail(serde_json::json!({"token_id": id})),
        );
        self.store
            .revoke_api_token(&user.id.to_string(), id, now, &[event])
            .await?;
        Ok(())
    }

    /// The principal a bearer token speaks for, if it is valid: known, not
    /// revoked, not expired, its user active and still in the role the
    /// token was issued under (a token made as a role change committed is
    /// refused though the change could not revoke it). Every use is recorded.
    pub async fn authenticate_token(&self, token: &str) -> AppResult<Option<TokenPrincipal>> {
        if !token.starts_with("vlm_") {
            return Ok(None);
        }
        let Some(row) = self
            .store
            .api_token_by_hash(&crypto::token_hash(token))
            .await?
        else {
            return Ok(None);
        };
        let now = self.now();
        if row.revoked_at.is_some() || row.expires_at <= now.millis() {
            return Ok(None);
        }
        let Ok(user_id) = row.user_id.parse() else {
            return Ok(None);
        };
        let Some(user) = self
            .store
            .user_by_id(user_id)
            .await?
            .filter(|u| u.user.active)
        else {
            return Ok(None);
        };
        if user.user.role.as_str() != row.issued_role {
            // Only a token made as a role change committed leaves one.
            tracing::warn!(
                user = %user.user.username.as_str(),
                token_id = %row.id,
                issued = %row.issued_role,
                now = %user.user.role,
                "an API token issued under another role than the account's was refused"
            );
            return Ok(None);
        }
        self.store.touch_api_token(&row.id, now).await?;
        Ok(Some(TokenPrincipal {
            user: user.user,
            scope: TokenScope::parse(&row.scope)?,
            token_id: row.id,
        }))
    }
}
