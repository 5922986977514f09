//! Administration: accounts, the security log, alerts.

use app::Actor;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::Role;
use secrecy::SecretString;
use serde::Deserialize;

use super::UserView;
use crate::extract::{ApiJson, BrowserSignedIn, Meta, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/api/admin/security-events", security_events)
        .get("/api/admin/alerts", alerts)
        .post("/api/admin/users", create_user)
        .post("/api/admin/users/{username}/deactivate", deactivate_user)
        .post("/api/admin/users/{username}/link-patient", link_patient)
        .post("/api/admin/users/{username}/reset-password", reset_password)
        .post("/api/admin/users/{username}/reset-totp", reset_totp)
        .post("/api/admin/users/{username}/revoke-tokens", revoke_tokens)
        .put("/api/admin/users/{username}/role", change_role)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    role: String,
}

/// Gives a staff account another role; its sessions end and its API tokens
/// are revoked.
async fn change_role(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<NewRole>,
) -> Result<Response, Problem> {
    let role: Role = body.role.parse().map_err(app::AppError::from)?;
    let user = state
        .app
        .change_role(Actor::User(&signed_in.user), &username, role, &meta)
        .await?;
    Ok(Json(UserView::from(&user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: SecretString,
}

/// Gives an account a new, temporary password (a forgotten one): its
/// sessions end, and its holder chooses their own at the next sign-in.
async fn reset_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<Response, Problem> {
    let user = state
        .app
        .reset_password(
            Actor::User(&signed_in.user),
            &username,
            body.password,
            &meta,
        )
        .await?;
    Ok(Json(UserView::from(&user)).into_response())
}

/// Revokes every API token of an account; answers how many.
async fn revoke_tokens(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    Path(username): Path<String>,
) -> Result<Response, Problem> {
    let (user, revoked) = state
        .app
        .revoke_api_tokens_of(Actor::User(&signed_in.user), &username, &meta)
        .await?;
    Ok(Json(serde_json::json!({
        "username": user.username.as_str(),
        "revoked": revoked,
    }))
    .into_response())
}

/// Turns a user's two-factor sign-in off (a lost phone); their sessions
/// end, and a role that requires it enrols again at the next login.
async fn reset_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    Path(username): Path<String>,
) -> Result<Response, Problem> {
    state
        .app
        .admin_reset_totp(&signed_in.user, &username, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn security_events(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(page): Query<Page>,
) -> Result<Response, Problem> {
    let events = state
        .app
        .security_events(
            Actor::User(&signed_in.user),
            page.before,
            page.limit.unwrap_or(100),
        )
        .await?;
    let next = events.last().map(|e| e.seq).filter(|&s| s > 1);
    Ok(Json(serde_json::json!({"items": events, "next_before": next})).into_response())
}

async fn alerts(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(page): Query<Page>,
) -> Result<Response, Problem> {
    let items = state
        .app
        .alerts(Actor::User(&signed_in.user), page.limit.unwrap_or(100))
        .await?;
    Ok(Json(serde_json::json!({"items": items})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: String,
    password: SecretString,
}

async fn create_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, Problem> {
    let role: Role = body.role.parse().map_err(app::AppError::from)?;
    let user = state
        .app
        .create_user(
            Actor::User(&signed_in.user),
            &body.username,
            role,
            body.password,
            &meta,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}

async fn deactivate_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    Path(username): Path<String>,
) -> Result<Response, Problem> {
    let user = state
        .app
        .deactivate_user(Actor::User(&signed_in.user), &username, &meta)
        .await?;
    Ok(Json(UserView::from(&user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    patient_id: String,
}

async fn link_patient(
    State(state): State<AppState>,
    Meta(meta): Meta,
    signed_in: BrowserSignedIn,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<Link>,
) -> Result<Response, Problem> {
    let user = state
        .app
        .link_patient_user(
            Actor::User(&signed_in.user),
            &username,
            &body.patient_id,
            &meta,
        )
        .await?;
    Ok(
        Json(serde_json::json!({"user": UserView::from(&user), "patient_id": body.patient_id}))
            .into_response(),
    )
}
