//! The signed-in user's own account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::extract::{AnySession, ApiJson, BrowserSignedIn, Meta, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.post("/api/account/password", change_password)
        .post("/api/account/sessions/end-others", end_other_sessions)
        .get("/api/account/tokens", list_tokens)
        .post("/api/account/tokens", create_token)
        .post("/api/account/tokens/{id}/revoke", revoke_token)
        .get("/api/account/totp", totp_status)
        .post("/api/account/totp/setup", totp_setup)
        .post("/api/account/totp/enable", totp_enable)
        .post("/api/account/totp/disable", totp_disable)
        .post("/api/account/totp/recovery-codes", new_recovery_codes)
}

/// The caller's session, full or enrolling (the enrolment steps are the only
/// things an enrolling session may do).
async fn totp_status(
    State(state): State<AppState>,
    AnySession(session): AnySession,
) -> Result<Response, Problem> {
    let status = state.app.totp_status(&session).await?;
    Ok(Json(status).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpSetupBody {
    password: SecretString,
}

/// A new secret, not active until a code from it confirms it. The answer
/// holds the `otpauth://` URI and the same as a QR code (SVG); nothing of
/// it is kept unsealed.
async fn totp_setup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AnySession(session): AnySession,
    ApiJson(body): ApiJson<TotpSetupBody>,
) -> Result<Response, Problem> {
    let setup = state.app.totp_setup(&session, body.password, &meta).await?;
    let uri = setup.otpauth_uri.expose_secret();
    let qr = qr_svg(uri)?;
    Ok(Json(serde_json::json!({"otpauth_uri": uri, "qr_svg": qr})).into_response())
}

/// The QR code of an `otpauth://` URI, as SVG.
pub(crate) fn qr_svg(uri: &str) -> Result<String, Problem> {
    Ok(qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| app::AppError::Internal(format!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpEnableBody {
    code: SecretString,
}

/// Confirms the new secret: two-factor sign-in is on; ten recovery codes
/// are shown this once. An enrolling session becomes a full one.
async fn totp_enable(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AnySession(session): AnySession,
    ApiJson(body): ApiJson<TotpEnableBody>,
) -> Result<Response, Problem> {
    let enabled = state.app.totp_enable(&session, body.code, &meta).await?;
    let codes: Vec<&str> = enabled
        .recovery_codes
        .iter()
        .map(|c| c.expose_secret())
        .collect();
    let mut headers = axum::http::HeaderMap::new();
    let mut status = "ok";
    if let Some(outcome) = &enabled.session {
        crate::cookies::set_new_session(&state, &outcome.session, &mut headers);
        if outcome.stage == app::SessionStage::Password {
            status = "password_change_required";
        }
    }
    Ok((
        headers,
        Json(serde_json::json!({"status": status, "recovery_codes": codes})),
    )
        .into_response())
}

/// The password and a current code (turning two-factor off; new recovery
/// codes).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpDisableBody {
    password: SecretString,
    code: SecretString,
}

async fn totp_disable(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    ApiJson(body): ApiJson<TotpDisableBody>,
) -> Result<Response, Problem> {
    state
        .app
        .totp_disable(&signed_in.session, body.password, body.code, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ten new recovery codes, shown this once, replacing every old one; needs
/// the password and a current code, as turning two-factor off does.
async fn new_recovery_codes(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    ApiJson(body): ApiJson<TotpDisableBody>,
) -> Result<Response, Problem> {
    let codes = state
        .app
        .totp_new_recovery_codes(&signed_in.session, body.password, body.code, &meta)
        .await?;
    let codes: Vec<&str> = codes.iter().map(|c| c.expose_secret()).collect();
    Ok(Json(serde_json::json!({"recovery_codes": codes})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: SecretString,
    new_password: SecretString,
}

/// Changes the password; every other session of the user ends (204). A
/// session that had to choose its own password first is signed in now: new
/// session cookies and the answer of a sign-in (`{"status": "ok", "user"}`).
/// Browser sessions only: an API token cannot change a password.
async fn change_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    AnySession(session): AnySession,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Response, Problem> {
    let signed_in = state
        .app
        .change_password(&session, body.current_password, body.new_password, &meta)
        .await?;
    Ok(match signed_in {
        Some(outcome) => super::auth::signed_in_response(&state, &outcome),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// "Sign out everywhere else".
async fn end_other_sessions(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
) -> Result<Response, Problem> {
    let ended = state
        .app
        .end_other_sessions(&signed_in.session, &meta)
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
    signed_in: BrowserSignedIn,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, Problem> {
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
    signed_in: BrowserSignedIn,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, Problem> {
    state
        .app
        .revoke_api_token(&signed_in.user, &id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
