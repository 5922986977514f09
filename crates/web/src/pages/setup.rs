//! `/setup/{token}`: the first administrator chooses a username and password.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;

use super::layout;
use crate::extract::{CurrentSession, Meta};
use crate::routes::Routes;
use crate::{AppState, Problem, cookies};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/setup/{token}", show).post("/setup/{token}", submit)
}

fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        layout(
            "Setup",
            html! {
                h1 { "This setup link cannot be used" }
                p { "It is unknown, already used or expired, or an account already exists. \
                     Restart the server with an empty database for a new link, or ask an \
                     administrator for an account." }
            },
        ),
    )
        .into_response()
}

fn form(token: &str, csrf: &str, error: Option<&str>, username: &str) -> Markup {
    layout(
        "Set up Vellum",
        html! {
            h1 { "Set up Vellum" }
            p { "Choose the username and password of the first administrator." }
            @if let Some(e) = error {
                p class="error" role="alert" id="setup-error" { (e) }
            }
            form method="post" action={ "/setup/" (token) } {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="username" { "Username" }
                input id="username" name="username" autocomplete="username" required value=(username);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="new-password" required minlength="12";
                p class="hint" { "At least 12 characters; a few unrelated words work well." }
                button type="submit" { "Create administrator" }
            }
        },
    )
}

/// Shows the form, giving the browser a pre-login session and CSRF token.
async fn show(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if !state.app.setup_link_usable(&token).await? {
        return Ok(gone());
    }
    let mut out = HeaderMap::new();
    let csrf = cookies::csrf_token_for(&state, session.as_ref(), &headers, &mut out).await?;
    Ok((out, form(&token, &csrf, None, "")).into_response())
}

#[derive(Deserialize)]
struct SetupForm {
    csrf_token: String,
    username: String,
    password: SecretString,
}

async fn submit(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(token): Path<String>,
    Form(f): Form<SetupForm>,
) -> Result<Response, Problem> {
    match state
        .app
        .complete_setup(&token, &f.username, f.password, &meta)
        .await
    {
        Ok(user) => Ok(layout(
            "Vellum is ready",
            html! {
                h1 { "Vellum is ready" }
                p { "Administrator " strong { (user.username.as_str()) } " was created. Sign in with that username and password." }
            },
        )
        .into_response()),
        Err(app::AppError::NotFound) => Ok(gone()),
        Err(app::AppError::Invalid { field, message }) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            form(&token, &f.csrf_token, Some(&format!("{field} {message}")), &f.username),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}
