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
            &signed_in.session,
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
        .end_other_sessions(&signed_in.session, &meta)
        .await?;
    Ok(Json(serde_json::json!({"ended_sessions": ended})).into_response())
}
