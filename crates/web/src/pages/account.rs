//! `/account` (password, two-factor sign-in, API tokens, signing out
//! elsewhere) and the administrators' `/admin/users` and `/admin/security`.

use app::{Actor, AppError, TokenScope};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::clinical::page_error;
use super::{PageUser, layout};
use crate::extract::{CurrentSession, Meta};
use crate::routes::Routes;
use crate::{AppState, Problem, cookies};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/account", account)
        .post("/account/password", change_password)
        .post("/account/totp/disable", disable_totp)
        .post("/account/totp/recovery-codes", new_recovery_codes)
        .post("/account/tokens", create_token)
        .post("/account/tokens/{id}/revoke", revoke_token)
        .post("/account/sessions/end-others", end_others)
        .get("/admin/users", users)
        .post("/admin/users", create_user)
        .post("/admin/users/deactivate", deactivate)
        .post("/admin/users/reset-password", reset_password)
        .post("/admin/users/reset-totp", reset_totp)
        .post("/admin/users/revoke-tokens", revoke_tokens)
        .post("/admin/users/role", change_role)
        .post("/admin/users/link-patient", link_patient)
        .get("/admin/security", security)
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(csrf); }
}

/// The password and a current code, as the changes to two-factor sign-in
/// ask for them; `id` keeps each form's field ids apart.
fn password_and_code(id: &str) -> Markup {
    html! {
        label for={ (id) "_password" } { "Password" }
        input id={ (id) "_password" } name="password" type="password" autocomplete="current-password" required;
        label for={ (id) "_code" } { "Current code" }
        input id={ (id) "_code" } name="code" inputmode="numeric" autocomplete="one-time-code" required;
    }
}

fn notice(message: Option<&str>, error: bool) -> Markup {
    html! {
        @if let Some(m) = message {
            @if error { p class="error" role="alert" { (m) } } @else { p class="ok" role="status" { (m) } }
        }
    }
}

async fn account_page(
    state: &AppState,
    user: &domain::User,
    session: &app::ActiveSession,
    csrf: &str,
    message: Option<(&str, bool)>,
    shown_once: Option<&ShownOnce<'_>>,
) -> Result<Markup, Problem> {
    let totp = state.app.totp_status(session).await?;
    let tokens = state.app.api_tokens(user).await?;
    Ok(layout(
        "Your account",
        html! {
            h1 { "Your account" }
            p { "Signed in as " strong { (user.username.as_str()) } " (" (user.role.as_str()) ")." }
            (notice(message.map(|m| m.0), message.is_some_and(|m| m.1)))
            h2 { "Password" }
            form method="post" action="/account/password" {
                (csrf_field(csrf))
                label for="current_password" { "Current password" }
                input id="current_password" name="current_password" type="password" autocomplete="current-password" required;
                label for="new_password" { "New password (at least 12 characters)" }
                input id="new_password" name="new_password" type="password" autocomplete="new-password" required minlength="12";
                button type="submit" { "Change password" }
            }
            h2 { "Two-factor sign-in" }
            @if totp.enabled {
                p { "On. Recovery codes left: " strong { (totp.recovery_codes_left) } "." }
                @if let Some(ShownOnce::RecoveryCodes(codes)) = shown_once {
                    div class="ok" role="status" {
                        p { "Your new recovery codes, shown only now. Keep them somewhere safe; each works once. The old ones no longer work, and your other sessions have ended." }
                        ul class="recovery-codes" { @for c in codes { li { code { (c) } } } }
                    }
                }
                form method="post" action="/account/totp/recovery-codes" {
                    (csrf_field(csrf))
                    (password_and_code("codes"))
                    button type="submit" { "New recovery codes (the old ones stop working)" }
                }
                @if totp.required {
                    p class="hint" { "Your role must use it. If you lose your phone, an administrator can reset it." }
                } @else {
                    form method="post" action="/account/totp/disable" {
                        (csrf_field(csrf))
                        (password_and_code("totp"))
                        button type="submit" { "Turn off two-factor sign-in" }
                    }
                }
            } @else {
                p { "Off. " a href="/account/totp/enrol?next=%2Faccount" { "Set up two-factor sign-in" } }
            }
            h2 { "API tokens" }
            @if let Some(ShownOnce::Token(t)) = shown_once {
                p class="ok" role="status" { "Your new token, shown only now: " code { (t) } }
            }
            @if tokens.is_empty() { p { "None." } }
            ul class="tokens" {
                @for t in &tokens {
                    li {
                        strong { (t.name) } " — " (t.scope) ", expires " (t.expires_at.to_rfc3339())
                        @if let Some(r) = t.revoked_at { ", revoked " (r.to_rfc3339()) }
                        @else {
                            form method="post" action={ "/account/tokens/" (t.id) "/revoke" } class="inline" {
                                (csrf_field(csrf))
                                button type="submit" { "Revoke" }
                            }
                        }
                    }
                }
            }
            form method="post" action="/account/tokens" {
                (csrf_field(csrf))
                label for="token_name" { "Name (what will use it)" }
                input id="token_name" name="name" required maxlength="100";
                label for="scope" { "Scope" }
                select id="scope" name="scope" {
                    option value="read" selected { "read only" }
                    option value="read-write" { "read and write" }
                }
                button type="submit" { "Create token" }
            }
            h2 { "Sessions" }
            form method="post" action="/account/sessions/end-others" {
                (csrf_field(csrf))
                button type="submit" { "Sign out everywhere else" }
            }
        },
    ))
}

/// A secret the account page shows once, after the change that made it
/// (borrowed from its `SecretString`s, never copied).
enum ShownOnce<'a> {
    Token(&'a str),
    RecoveryCodes(Vec<&'a str>),
}

/// After a change that made a secret: the account page showing it once.
async fn show_once(
    state: &AppState,
    user: &domain::User,
    session: Option<app::ActiveSession>,
    headers: &HeaderMap,
    shown: &ShownOnce<'_>,
) -> Result<Response, Problem> {
    let (session, out, csrf) = session_and_csrf(state, session, headers).await?;
    let page = account_page(state, user, &session, &csrf, None, Some(shown)).await?;
    Ok((out, page).into_response())
}

/// The caller's full session and CSRF token, for a page.
async fn session_and_csrf(
    state: &AppState,
    session: Option<app::ActiveSession>,
    headers: &HeaderMap,
) -> Result<(app::ActiveSession, HeaderMap, String), Problem> {
    let session = session.ok_or_else(Problem::unauthenticated)?;
    let mut out = HeaderMap::new();
    let csrf = cookies::csrf_token_for(state, Some(&session), headers, &mut out).await?;
    Ok((session, out, csrf))
}

async fn account(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (session, out, csrf) = session_and_csrf(&state, session, &headers).await?;
    let page = account_page(&state, &user, &session, &csrf, None, None).await?;
    Ok((out, page).into_response())
}

/// After a change: the account page again, saying how it went.
async fn answer(
    state: &AppState,
    user: &domain::User,
    session: Option<app::ActiveSession>,
    headers: &HeaderMap,
    result: Result<String, AppError>,
) -> Result<Response, Problem> {
    let (message, error, status) = match result {
        Ok(m) => (m, false, StatusCode::OK),
        Err(AppError::Invalid { field, message }) => (
            format!("{field}: {message}"),
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(AppError::InvalidCredentials) => (
            "The password is not right.".to_owned(),
            true,
            StatusCode::UNAUTHORIZED,
        ),
        Err(AppError::InvalidCode | AppError::CodeReplayed) => (
            "That code is not right or was already used.".to_owned(),
            true,
            StatusCode::UNAUTHORIZED,
        ),
        Err(AppError::Conflict(what)) => (what, true, StatusCode::CONFLICT),
        Err(AppError::RateLimited { retry_after_secs }) => (
            format!(
                "Too many failed attempts. Try again in {} minute(s).",
                retry_after_secs.div_ceil(60)
            ),
            true,
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(e) => return Ok(page_error(e)),
    };
    let (session, out, csrf) = session_and_csrf(state, session, headers).await?;
    let page = account_page(state, user, &session, &csrf, Some((&message, error)), None).await?;
    Ok((status, out, page).into_response())
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: SecretString,
    new_password: SecretString,
}

async fn change_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<PasswordChange>,
) -> Result<Response, Problem> {
    let Some(s) = session.clone() else {
        return Err(Problem::unauthenticated());
    };
    let result = state
        .app
        .change_password(&s, f.current_password, f.new_password, &meta)
        .await
        .map(|_| "Password changed; your other sessions have ended.".to_owned());
    answer(&state, &user, session, &headers, result).await
}

/// The password and a current code (turning two-factor off; new recovery
/// codes).
#[derive(Deserialize)]
struct DisableForm {
    password: SecretString,
    code: SecretString,
}

async fn disable_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<DisableForm>,
) -> Result<Response, Problem> {
    let Some(s) = session.clone() else {
        return Err(Problem::unauthenticated());
    };
    let result = state
        .app
        .totp_disable(&s, f.password, f.code, &meta)
        .await
        .map(|()| "Two-factor sign-in is off; your other sessions have ended.".to_owned());
    answer(&state, &user, session, &headers, result).await
}

async fn new_recovery_codes(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<DisableForm>,
) -> Result<Response, Problem> {
    let Some(s) = session.clone() else {
        return Err(Problem::unauthenticated());
    };
    match state
        .app
        .totp_new_recovery_codes(&s, f.password, f.code, &meta)
        .await
    {
        Ok(codes) => {
            let shown = ShownOnce::RecoveryCodes(codes.iter().map(|c| c.expose_secret()).collect());
            show_once(&state, &user, session, &headers, &shown).await
        }
        Err(e) => answer(&state, &user, session, &headers, Err(e)).await,
    }
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
    scope: String,
}

async fn create_token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Result<Response, Problem> {
    let made = match TokenScope::parse(&f.scope) {
        Ok(scope) => {
            state
                .app
                .create_api_token(&user, &f.name, scope, None, &meta)
                .await
        }
        Err(e) => Err(e),
    };
    match made {
        Ok((token, _)) => {
            let shown = ShownOnce::Token(token.expose_secret());
            show_once(&state, &user, session, &headers, &shown).await
        }
        Err(e) => answer(&state, &user, session, &headers, Err(e)).await,
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let result = state
        .app
        .revoke_api_token(&user, &id, &meta)
        .await
        .map(|()| "Token revoked.".to_owned());
    answer(&state, &user, session, &headers, result).await
}

async fn end_others(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let Some(s) = session.clone() else {
        return Err(Problem::unauthenticated());
    };
    let result = state
        .app
        .end_other_sessions(&s, &meta)
        .await
        .map(|n| format!("Signed out of {n} other session(s)."));
    answer(&state, &user, session, &headers, result).await
}

// --- administration ------------------------------------------------------

/// A signed-in user the role matrix lets manage users, for an
/// administration page; anyone else gets what [`PageUser`] gives, or the
/// refusal page — before any form is read.
struct PageAdmin(domain::User);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageAdmin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let PageUser(user) =
            <PageUser as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
                .await?;
        match super::refuse_unless(&user, domain::access::Action::ManageUsers) {
            Some(refusal) => Err(refusal),
            None => Ok(PageAdmin(user)),
        }
    }
}

fn users_page(csrf: &str, message: Option<(&str, bool)>) -> Markup {
    let user_form = |action: &str, label: &str, extra: Markup| {
        html! {
            form method="post" action=(action) {
                (csrf_field(csrf))
                (extra)
                button type="submit" { (label) }
            }
        }
    };
    layout(
        "Users",
        html! {
            h1 { "Users" }
            (notice(message.map(|m| m.0), message.is_some_and(|m| m.1)))
            h2 { "Create an account" }
            form method="post" action="/admin/users" {
                (csrf_field(csrf))
                label for="username" { "Username" }
                input id="username" name="username" required autocomplete="off";
                label for="role" { "Role" }
                select id="role" name="role" {
                    option value="clinician" { "clinician" }
                    option value="patient" { "patient" }
                    option value="admin" { "admin" }
                }
                label for="password" { "First password (at least 12 characters)" }
                input id="password" name="password" type="password" required minlength="12" autocomplete="new-password" aria-describedby="password_hint";
                p class="hint" id="password_hint" { "Temporary: hand it over privately; its holder must choose their own at the first sign-in, before anything else." }
                button type="submit" { "Create" }
            }
            h2 { "Change an account" }
            p class="hint" { "Each takes effect at once and is recorded in the security log." }
            (user_form("/admin/users/deactivate", "Deactivate", html! {
                label for="d_username" { "Username to deactivate (their sessions end)" }
                input id="d_username" name="username" required;
            }))
            (user_form("/admin/users/role", "Change role", html! {
                label for="c_username" { "Username whose role to change (their sessions end, their API tokens are revoked)" }
                input id="c_username" name="username" required;
                label for="c_role" { "New role" }
                select id="c_role" name="role" {
                    option value="clinician" { "clinician" }
                    option value="admin" { "admin" }
                }
            }))
            (user_form("/admin/users/reset-password", "Reset password", html! {
                label for="p_username" { "Username whose password to reset (check who is asking first; their sessions end)" }
                input id="p_username" name="username" required;
                label for="p_password" { "Temporary password (at least 12 characters; they choose their own at the next sign-in)" }
                input id="p_password" name="password" type="password" required minlength="12" autocomplete="new-password";
            }))
            (user_form("/admin/users/reset-totp", "Reset two-factor sign-in", html! {
                label for="r_username" { "Username whose two-factor sign-in to reset (check who is asking first)" }
                input id="r_username" name="username" required;
            }))
            (user_form("/admin/users/revoke-tokens", "Revoke API tokens", html! {
                label for="t_username" { "Username whose API tokens to revoke, all of them (for a token that may be in other hands; sessions are kept)" }
                input id="t_username" name="username" required;
            }))
            (user_form("/admin/users/link-patient", "Link to the patient record", html! {
                label for="l_username" { "Patient account username" }
                input id="l_username" name="username" required;
                label for="patient_id" { "Patient record id" }
                input id="patient_id" name="patient_id" required;
            }))
            p { a href="/admin/security" { "Security log and alerts" } " · " a href="/admin/safety" { "Clinical safety file" } }
        },
    )
}

async fn users(
    State(state): State<AppState>,
    PageAdmin(_): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (_, out, csrf) = session_and_csrf(&state, session, &headers).await?;
    Ok((out, users_page(&csrf, None)).into_response())
}

async fn admin_answer(
    state: &AppState,
    session: Option<app::ActiveSession>,
    headers: &HeaderMap,
    result: Result<String, AppError>,
) -> Result<Response, Problem> {
    let (message, error, status) = match result {
        Ok(m) => (m, false, StatusCode::OK),
        Err(AppError::NotFound) => (
            "There is no such account.".to_owned(),
            true,
            StatusCode::NOT_FOUND,
        ),
        Err(AppError::Invalid { field, message }) => (
            format!("{field}: {message}"),
            true,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(AppError::Conflict(what)) => (what, true, StatusCode::CONFLICT),
        Err(e) => return Ok(page_error(e)),
    };
    let (_, out, csrf) = session_and_csrf(state, session, headers).await?;
    Ok((status, out, users_page(&csrf, Some((&message, error)))).into_response())
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    role: String,
    password: SecretString,
}

async fn create_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<NewUser>,
) -> Result<Response, Problem> {
    let result = match f.role.parse::<domain::Role>() {
        Ok(role) => state
            .app
            .create_user(Actor::User(&user), &f.username, role, f.password, &meta)
            .await
            .map(|u| {
                format!(
                    "Created {} {}. The password is temporary: {} chooses their own at the \
                     first sign-in.",
                    u.role.as_str(),
                    u.username.as_str(),
                    u.username.as_str()
                )
            }),
        Err(_) => Err(AppError::invalid(
            "role",
            "must be clinician, patient or admin",
        )),
    };
    admin_answer(&state, session, &headers, result).await
}

#[derive(Deserialize)]
struct Named {
    username: String,
    patient_id: Option<String>,
    role: Option<String>,
}

async fn deactivate(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<Named>,
) -> Result<Response, Problem> {
    let result = state
        .app
        .deactivate_user(Actor::User(&user), &f.username, &meta)
        .await
        .map(|u| {
            format!(
                "Deactivated {}; their sessions have ended.",
                u.username.as_str()
            )
        });
    admin_answer(&state, session, &headers, result).await
}

async fn change_role(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<Named>,
) -> Result<Response, Problem> {
    let result = match f.role.as_deref().unwrap_or("").parse::<domain::Role>() {
        Ok(role) => state
            .app
            .change_role(Actor::User(&user), &f.username, role, &meta)
            .await
            .map(|u| {
                format!(
                    "The role of {} is now {}; their sessions have ended and their API tokens \
                     are revoked.",
                    u.username.as_str(),
                    u.role.as_str()
                )
            }),
        Err(_) => Err(AppError::invalid("role", "must be clinician or admin")),
    };
    admin_answer(&state, session, &headers, result).await
}

#[derive(Deserialize)]
struct PasswordReset {
    username: String,
    password: SecretString,
}

async fn reset_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<PasswordReset>,
) -> Result<Response, Problem> {
    let result = state
        .app
        .reset_password(Actor::User(&user), &f.username, f.password, &meta)
        .await
        .map(|u| {
            format!(
                "The password of {} was reset; their sessions have ended. Hand the temporary \
                 password over privately: they choose their own at the next sign-in.",
                u.username.as_str()
            )
        });
    admin_answer(&state, session, &headers, result).await
}

async fn reset_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<Named>,
) -> Result<Response, Problem> {
    let result = state
        .app
        .admin_reset_totp(&user, &f.username, &meta)
        .await
        .map(|()| format!("Two-factor sign-in of {} was reset.", f.username));
    admin_answer(&state, session, &headers, result).await
}

async fn revoke_tokens(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<Named>,
) -> Result<Response, Problem> {
    let result = state
        .app
        .revoke_api_tokens_of(Actor::User(&user), &f.username, &meta)
        .await
        .map(|(u, n)| format!("Revoked {n} API token(s) of {}.", u.username.as_str()));
    admin_answer(&state, session, &headers, result).await
}

async fn link_patient(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PageAdmin(user): PageAdmin,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    Form(f): Form<Named>,
) -> Result<Response, Problem> {
    let pid = f.patient_id.unwrap_or_default();
    let result = state
        .app
        .link_patient_user(Actor::User(&user), &f.username, &pid, &meta)
        .await
        .map(|u| format!("Linked {} to the patient record.", u.username.as_str()));
    admin_answer(&state, session, &headers, result).await
}

async fn security(State(state): State<AppState>, PageAdmin(user): PageAdmin) -> Response {
    let events = match state
        .app
        .security_events(Actor::User(&user), None, 200)
        .await
    {
        Ok(e) => e,
        Err(e) => return page_error(e),
    };
    let alerts = match state.app.alerts(Actor::User(&user), 50).await {
        Ok(a) => a,
        Err(e) => return page_error(e),
    };
    layout(
        "Security",
        html! {
            h1 { "Security log" }
            h2 { "Alerts" }
            @if alerts.is_empty() { p { "No alerts." } }
            ul { @for a in &alerts { li { strong { (a.rule) } " — " (a.subject) ", " (a.created_at.to_rfc3339()) } } }
            h2 { "Latest events" }
            table class="events" {
                thead { tr { th { "#" } th { "When" } th { "What" } th { "Who" } th { "From" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (e.seq) }
                            td { (e.at.to_rfc3339()) }
                            td { (e.kind) }
                            td { (e.username.as_deref().unwrap_or("")) }
                            td { (e.ip.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}
