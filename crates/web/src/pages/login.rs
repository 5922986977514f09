//! Signing in and out without JavaScript: `/login`, `/login/totp`, the
//! two-factor enrolment the policy may require, choosing one's own password
//! in place of a temporary one (`/login/password`), `/logout`. Every form
//! carries the CSRF token in a hidden `csrf_token` field; the CSRF guard
//! checks it like the header.

use app::{AppError, LoginOutcome, SessionStage, TotpCode};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::layout;
use crate::extract::{CurrentSession, Meta};
use crate::routes::Routes;
use crate::{AppState, Problem, cookies};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/login", show_login)
        .post("/login", submit_login)
        .get("/login/totp", show_totp)
        .post("/login/totp", submit_totp)
        .get("/account/totp/enrol", show_enrol)
        .post("/account/totp/enrol", submit_enrol_password)
        .post("/account/totp/enrol/confirm", submit_enrol_code)
        .get("/login/password", show_new_password)
        .post("/login/password", submit_new_password)
        .post("/logout", logout)
}

/// Where to go after signing in: a path on this site only. Anything else —
/// another origin, `//host`, a backslash trick — goes to the front page, so
/// the sign-in form can never be used to send someone elsewhere.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn encode(s: &str) -> String {
    serde_urlencoded::to_string([("next", s)]).unwrap_or_default()
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn hidden(csrf: &str, next: &str) -> Markup {
    html! {
        input type="hidden" name="csrf_token" value=(csrf);
        input type="hidden" name="next" value=(next);
    }
}

fn error_line(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            p class="error" role="alert" id="form-error" { (e) }
        }
    }
}

fn login_page(csrf: &str, next: &str, username: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in to Vellum" }
            (error_line(error))
            form method="post" action="/login" {
                (hidden(csrf, next))
                label for="username" { "Username" }
                input id="username" name="username" autocomplete="username" required value=(username) autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A page with the caller's CSRF token (starting a pre-login session when
/// there is none), and the cookies that go with it.
async fn with_csrf(
    state: &AppState,
    session: Option<&app::ActiveSession>,
    headers: &HeaderMap,
    page: impl FnOnce(&str) -> Markup,
) -> Result<Response, Problem> {
    let mut out = HeaderMap::new();
    let csrf = cookies::csrf_token_for(state, session, headers, &mut out).await?;
    Ok((out, page(&csrf)).into_response())
}

async fn show_login(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let next = safe_next(q.next.as_deref());
    with_csrf(&state, session.as_ref(), &headers, |csrf| {
        login_page(csrf, &next, "", None)
    })
    .await
}

#[derive(Deserialize)]
struct LoginForm {
    csrf_token: String,
    username: String,
    password: SecretString,
    next: Option<String>,
}

/// Sets the new session's cookies and sends the browser on: to `next` when
/// signed in, else to the step still to come.
fn proceed(state: &AppState, outcome: &LoginOutcome, next: &str) -> Response {
    let mut headers = HeaderMap::new();
    crate::cookies::set_new_session(state, &outcome.session, &mut headers);
    let to = match outcome.stage {
        SessionStage::Full => next.to_owned(),
        SessionStage::Totp => format!("/login/totp?{}", encode(next)),
        SessionStage::Enrol => format!("/account/totp/enrol?{}", encode(next)),
        SessionStage::Password => new_password_path(next),
    };
    (headers, Redirect::to(&to)).into_response()
}

/// Where a session that must choose its own password goes, then to `next`.
pub(crate) fn new_password_path(next: &str) -> String {
    format!("/login/password?{}", encode(next))
}

/// The answer to a refused sign-in step: the same form with what was wrong.
fn refused(e: AppError, page: impl FnOnce(&str) -> Markup) -> Result<Response, Problem> {
    let (status, message, retry) = match e {
        AppError::InvalidCredentials => (
            StatusCode::UNAUTHORIZED,
            "The username or password is not right.".to_owned(),
            None,
        ),
        AppError::InvalidCode => (
            StatusCode::UNAUTHORIZED,
            "That code is not right. Enter the code your app shows now.".to_owned(),
            None,
        ),
        AppError::CodeReplayed => (
            StatusCode::UNAUTHORIZED,
            "That code was already used. Wait for the next code in your app. If you did not \
             just sign in, tell your administrator."
                .to_owned(),
            None,
        ),
        AppError::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts. Try again in {} minute(s).",
                retry_after_secs.div_ceil(60)
            ),
            Some(retry_after_secs),
        ),
        AppError::Invalid { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field} {message}"),
            None,
        ),
        AppError::Conflict(what) => (StatusCode::CONFLICT, what, None),
        other => return Err(other.into()),
    };
    let mut res = (status, page(&message)).into_response();
    if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(res)
}

async fn submit_login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    Form(f): Form<LoginForm>,
) -> Result<Response, Problem> {
    let next = safe_next(f.next.as_deref());
    match state
        .app
        .login(&f.username, f.password, session.as_ref(), &meta)
        .await
    {
        Ok(outcome) => Ok(proceed(&state, &outcome, &next)),
        Err(e) => refused(e, |m| {
            login_page(&f.csrf_token, &next, &f.username, Some(m))
        }),
    }
}

fn totp_page(csrf: &str, next: &str, error: Option<&str>) -> Markup {
    layout(
        "Two-factor sign-in",
        html! {
            h1 { "Enter your code" }
            (error_line(error))
            form method="post" action="/login/totp" {
                (hidden(csrf, next))
                label for="code" { "Code from your authenticator app, or a recovery code" }
                input id="code" name="code" autocomplete="one-time-code" required autofocus;
                button type="submit" { "Continue" }
            }
            p class="hint" { "Lost your phone? Use one of your recovery codes, or ask an administrator to reset two-factor sign-in." }
        },
    )
}

/// A redirect back to the sign-in form unless the session is a partial one
/// at `stage`.
fn unless_at_stage(
    session: Option<&app::ActiveSession>,
    stage: SessionStage,
    next: &str,
) -> Option<Response> {
    match session {
        Some(s) if s.partial_user(stage).is_ok() => None,
        _ => Some(back_to_sign_in(next)),
    }
}

/// The sign-in form, then `next`.
fn back_to_sign_in(next: &str) -> Response {
    Redirect::to(&format!("/login?{}", encode(next))).into_response()
}

/// The session when it is a partial one at `stage`.
fn partial_at(
    session: Option<app::ActiveSession>,
    stage: SessionStage,
) -> Option<app::ActiveSession> {
    session.filter(|s| s.partial_user(stage).is_ok())
}

async fn show_totp(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let next = safe_next(q.next.as_deref());
    if let Some(back) = unless_at_stage(session.as_ref(), SessionStage::Totp, &next) {
        return Ok(back);
    }
    with_csrf(&state, session.as_ref(), &headers, |csrf| {
        totp_page(csrf, &next, None)
    })
    .await
}

#[derive(Deserialize)]
struct CodeForm {
    csrf_token: String,
    code: SecretString,
    next: Option<String>,
}

async fn submit_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    Form(f): Form<CodeForm>,
) -> Result<Response, Problem> {
    let next = safe_next(f.next.as_deref());
    let Some(session) = partial_at(session, SessionStage::Totp) else {
        return Ok(back_to_sign_in(&next));
    };
    let typed = f.code.expose_secret().trim();
    let code = if typed.len() == 6 && typed.bytes().all(|b| b.is_ascii_digit()) {
        TotpCode::Code(f.code)
    } else {
        TotpCode::Recovery(f.code)
    };
    match state.app.totp_login(&session, code, &meta).await {
        Ok(outcome) => Ok(proceed(&state, &outcome, &next)),
        Err(e) => refused(e, |m| totp_page(&f.csrf_token, &next, Some(m))),
    }
}

fn enrol_password_page(csrf: &str, next: &str, error: Option<&str>) -> Markup {
    layout(
        "Set up two-factor sign-in",
        html! {
            h1 { "Set up two-factor sign-in" }
            p { "Your account must use a second factor: a six-digit code from an authenticator app on your phone, as well as your password." }
            (error_line(error))
            form method="post" action="/account/totp/enrol" {
                (hidden(csrf, next))
                label for="password" { "Your password, again" }
                input id="password" name="password" type="password" autocomplete="current-password" required autofocus;
                button type="submit" { "Show the QR code" }
            }
        },
    )
}

fn enrol_code_page(csrf: &str, next: &str, qr: &str, error: Option<&str>) -> Markup {
    let data = base64::engine::general_purpose::STANDARD.encode(qr.as_bytes());
    layout(
        "Set up two-factor sign-in",
        html! {
            h1 { "Scan the QR code" }
            p { "Scan it with your authenticator app, then enter the code the app shows." }
            img src={ "data:image/svg+xml;base64," (data) } alt="QR code for your authenticator app" width="200" height="200";
            (error_line(error))
            form method="post" action="/account/totp/enrol/confirm" {
                (hidden(csrf, next))
                label for="code" { "Code from your app" }
                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                button type="submit" { "Turn on two-factor sign-in" }
            }
        },
    )
}

/// Who may enrol: a full session, or one the policy holds at enrolment.
fn may_enrol(session: Option<&app::ActiveSession>) -> bool {
    session.is_some_and(|s| s.user().is_ok() || s.partial_user(SessionStage::Enrol).is_ok())
}

async fn show_enrol(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let next = safe_next(q.next.as_deref());
    if !may_enrol(session.as_ref()) {
        return Ok(back_to_sign_in(&next));
    }
    with_csrf(&state, session.as_ref(), &headers, |csrf| {
        enrol_password_page(csrf, &next, None)
    })
    .await
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf_token: String,
    password: SecretString,
    next: Option<String>,
}

async fn submit_enrol_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    Form(f): Form<PasswordForm>,
) -> Result<Response, Problem> {
    let next = safe_next(f.next.as_deref());
    let Some(session) = session.filter(|s| may_enrol(Some(s))) else {
        return Ok(back_to_sign_in(&next));
    };
    match state.app.totp_setup(&session, f.password, &meta).await {
        Ok(setup) => {
            let qr = crate::api::qr_svg(setup.otpauth_uri.expose_secret())?;
            Ok(enrol_code_page(&f.csrf_token, &next, &qr, None).into_response())
        }
        Err(e) => refused(e, |m| enrol_password_page(&f.csrf_token, &next, Some(m))),
    }
}

async fn submit_enrol_code(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    Form(f): Form<CodeForm>,
) -> Result<Response, Problem> {
    let next = safe_next(f.next.as_deref());
    let Some(session) = session.filter(|s| may_enrol(Some(s))) else {
        return Ok(back_to_sign_in(&next));
    };
    match state.app.totp_enable(&session, f.code, &meta).await {
        Ok(enabled) => {
            let mut headers = HeaderMap::new();
            if let Some(outcome) = &enabled.session {
                crate::cookies::set_new_session(&state, &outcome.session, &mut headers);
            }
            let page = layout(
                "Recovery codes",
                html! {
                    h1 { "Two-factor sign-in is on" }
                    p { "These recovery codes are shown " strong { "only now" } ". Each signs you in once if you lose your phone. Print them or keep them in a password manager." }
                    ol class="codes" {
                        @for c in &enabled.recovery_codes {
                            li { code { (c.expose_secret()) } }
                        }
                    }
                    @let onward = match enabled.session.as_ref().map(|o| o.stage) {
                        Some(SessionStage::Password) => new_password_path(&next),
                        _ => next.clone(),
                    };
                    p { a href=(onward) { "I have saved them: continue" } }
                },
            );
            Ok((headers, page).into_response())
        }
        // Back to the password step: a new QR code is needed only if the
        // pending secret is gone; a wrong code asks again.
        Err(e) => refused(e, |m| enrol_password_page(&f.csrf_token, &next, Some(m))),
    }
}

fn new_password_page(csrf: &str, next: &str, error: Option<&str>) -> Markup {
    layout(
        "Choose your password",
        html! {
            h1 { "Choose your own password" }
            p { "Your password was set by an administrator. Choose one only you know before you go on; the one you were given will no longer work." }
            (error_line(error))
            form method="post" action="/login/password" {
                (hidden(csrf, next))
                label for="current_password" { "The password you were given" }
                input id="current_password" name="current_password" type="password" autocomplete="current-password" required autofocus;
                label for="new_password" { "Your new password" }
                input id="new_password" name="new_password" type="password" autocomplete="new-password" required;
                p class="hint" { "At least 12 characters; a few unrelated words are easy to remember and hard to guess." }
                button type="submit" { "Save and continue" }
            }
        },
    )
}

async fn show_new_password(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Query(q): Query<NextQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let next = safe_next(q.next.as_deref());
    if session.as_ref().is_some_and(|s| s.user().is_ok()) {
        // Signed in already: nothing to do here.
        return Ok(Redirect::to(&next).into_response());
    }
    if let Some(back) = unless_at_stage(session.as_ref(), SessionStage::Password, &next) {
        return Ok(back);
    }
    with_csrf(&state, session.as_ref(), &headers, |csrf| {
        new_password_page(csrf, &next, None)
    })
    .await
}

#[derive(Deserialize)]
struct NewPasswordForm {
    csrf_token: String,
    current_password: SecretString,
    new_password: SecretString,
    next: Option<String>,
}

/// The temporary password and one of the user's own: the partial session
/// becomes a full one and goes on to `next`.
async fn submit_new_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
    Form(f): Form<NewPasswordForm>,
) -> Result<Response, Problem> {
    let next = safe_next(f.next.as_deref());
    let Some(session) = partial_at(session, SessionStage::Password) else {
        return Ok(back_to_sign_in(&next));
    };
    match state
        .app
        .change_password(&session, f.current_password, f.new_password, &meta)
        .await
    {
        Ok(Some(outcome)) => Ok(proceed(&state, &outcome, &next)),
        Ok(None) => Ok(Redirect::to(&next).into_response()),
        // The fields by the names the form shows them under.
        Err(AppError::Invalid { field, message }) => {
            let label = if field == "current_password" {
                "The password you were given"
            } else {
                "Your new password"
            };
            let said = AppError::Invalid {
                field: label,
                message,
            };
            refused(said, |m| new_password_page(&f.csrf_token, &next, Some(m)))
        }
        Err(e) => refused(e, |m| new_password_page(&f.csrf_token, &next, Some(m))),
    }
}

async fn logout(
    State(state): State<AppState>,
    Meta(meta): Meta,
    CurrentSession(session): CurrentSession,
) -> Result<Response, Problem> {
    if let Some(s) = session {
        state.app.logout(&s, &meta).await?;
    }
    let mut headers = HeaderMap::new();
    state.web.cookie_names().clear_both(&mut headers);
    Ok((headers, Redirect::to("/login")).into_response())
}
