//! Sign-in, sign-out, the caller's identity, and CSRF token issue.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::UserView;
use crate::extract::{ApiJson, CurrentSession, Meta, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem, cookies};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/api/auth/csrf", csrf)
        .post("/api/auth/login", login)
        .post("/api/auth/login/totp", login_totp)
        .post("/api/auth/logout", logout)
        .get("/api/auth/me", me)
}

/// Issues the CSRF token for the caller's session, starting a pre-login
/// session when there is none, so that the login form is protected too.
async fn csrf(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut out = HeaderMap::new();
    let token = cookies::csrf_token_for(&state, session.as_ref(), &headers, &mut out).await?;
    Ok((out, Json(serde_json::json!({"csrf_token": token}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: SecretString,
}

/// Checks the password and starts a new session: new session token, new
/// CSRF token, the pre-login session deleted.
async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, Problem> {
    let outcome = state
        .app
        .login(&body.username, body.password, session.as_ref(), &meta)
        .await?;
    Ok(signed_in_response(&state, &outcome))
}

/// Sets the new session's cookies and says what comes next: `ok` (signed
/// in), `totp_required`, `totp_enrolment_required` or
/// `password_change_required` (a partial session that can do only that).
pub(crate) fn signed_in_response(state: &AppState, outcome: &app::LoginOutcome) -> Response {
    let mut headers = HeaderMap::new();
    crate::cookies::set_new_session(state, &outcome.session, &mut headers);
    let body = match outcome.stage {
        app::SessionStage::Full => {
            serde_json::json!({"status": "ok", "user": UserView::from(&outcome.user)})
        }
        app::SessionStage::Totp => serde_json::json!({"status": "totp_required"}),
        app::SessionStage::Enrol => serde_json::json!({"status": "totp_enrolment_required"}),
        app::SessionStage::Password => serde_json::json!({"status": "password_change_required"}),
    };
    (headers, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpLoginBody {
    code: Option<SecretString>,
    recovery_code: Option<SecretString>,
}

/// The second step of signing in: a code (or a recovery code) turns the
/// partial session into a full one, with new session and CSRF tokens.
async fn login_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    ApiJson(body): ApiJson<TotpLoginBody>,
) -> Result<Response, Problem> {
    let session = session.ok_or_else(Problem::unauthenticated)?;
    let code = match (body.code, body.recovery_code) {
        (Some(c), None) => app::TotpCode::Code(c),
        (None, Some(r)) => app::TotpCode::Recovery(r),
        _ => {
            return Err(app::AppError::invalid(
                "code",
                "send either \"code\" (six digits) or \"recovery_code\"",
            )
            .into());
        }
    };
    let outcome = state.app.totp_login(&session, code, &meta).await?;
    Ok(signed_in_response(&state, &outcome))
}

/// Ends the session on the server and clears both cookies.
async fn logout(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
) -> Result<Response, Problem> {
    let session = session.ok_or_else(Problem::unauthenticated)?;
    state.app.logout(&session, &meta).await?;
    let mut headers = HeaderMap::new();
    state.web.cookie_names().clear_both(&mut headers);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

async fn me(signed_in: SignedIn) -> Json<UserView> {
    Json(UserView::from(&signed_in.user))
}
