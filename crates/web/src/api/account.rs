//! The signed-in user's own account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;

use crate::extract::{ApiJson, Meta, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.post("/api/account/password", change_password)
        .post("/api/account/sessions/end-others", end_other_sessions)
        .get("/api/account/tokens", list_tokens)
        .post("/api/account/tokens", create_token)
        .post("/api/account/tokens/{id}/revoke", revoke_token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: SecretString,
    new_password: SecretString,
}

/// Changes the password; every other session of the user ends.
async fn change_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: SignedIn,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Response, Problem> {
    state
        .app
        .change_password(
            signed_in.browser_session()?,
            body.current_password,
            body.new_password,
            &meta,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// "Sign out everywhere else".
async fn end_other_sessions(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: SignedIn,
) -> Result<Response, Problem> {
    let ended = state
        .app
        .end_other_sessions(signed_in.browser_session()?, &meta)
        .await?;
    Ok(Json(serde_json::json!({"ended_sessions": ended})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// `"read"` (the default: least privilege) or `"read-write"`.
    scope: Option<String>,
    expires_in_days: Option<i64>,
}

/// Issues an API token; the token is in this answer only.
async fn create_token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: SignedIn,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, Problem> {
    signed_in.browser_session()?;
    let scope = app::TokenScope::parse(body.scope.as_deref().unwrap_or("read"))?;
    let (token, view) = state
        .app
        .create_api_token(
            &signed_in.user,
            &body.name,
            scope,
            body.expires_in_days,
            &meta,
        )
        .await?;
    let mut out = serde_json::to_value(&view).unwrap_or_default();
    out["token"] =
        serde_json::Value::String(secrecy::ExposeSecret::expose_secret(&token).to_owned());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn list_tokens(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response, Problem> {
    let items = state.app.api_tokens(&signed_in.user).await?;
    Ok(Json(serde_json::json!({"items": items})).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: SignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, Problem> {
    signed_in.browser_session()?;
    state
        .app
        .revoke_api_token(&signed_in.user, &id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
