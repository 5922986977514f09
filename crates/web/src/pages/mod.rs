//! Server-rendered pages that work without JavaScript. (The full web
//! application grows here; for now the front page, signing in and out with
//! two-factor sign-in and enrolment, and the first-run setup page.)

mod account;
mod clinical;
mod letter_form;
mod login;

pub(crate) use login::safe_next;
mod patient_form;
mod safety;
pub(crate) mod server_errors;
mod setup;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::routes::Routes;

pub(crate) fn routes(r: Routes) -> Routes {
    let r = r
        .get("/", index)
        .get("/static/vellum.css", stylesheet)
        .get("/static/vellum.js", script);
    let r = login::routes(r);
    let r = account::routes(r);
    let r = patient_form::routes(r);
    let r = letter_form::routes(r);
    let r = clinical::routes(r);
    let r = safety::routes(r);
    setup::routes(r)
}

/// Whether the role matrix (`domain::access`) lets `user` do `action` at
/// all — for deciding what a page offers. The app checks every use itself.
pub(crate) fn may(user: &domain::User, action: domain::access::Action) -> bool {
    domain::access::scope(user.role, action) != domain::access::Scope::None
}

/// The refusal page unless the role matrix allows `action`.
pub(crate) fn refuse_unless(
    user: &domain::User,
    action: domain::access::Action,
) -> Option<Response> {
    (!may(user, action)).then(|| clinical::page_error(app::AppError::Forbidden))
}

/// A fully signed-in user, for a page. Anyone else — no session, an expired
/// one, a sign-in half done — is sent to sign in and brought back here after;
/// a user who must first choose their own password, to do that.
pub(crate) struct PageUser(pub domain::User);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let crate::extract::CurrentSession(session) =
            crate::extract::CurrentSession::from_request_parts(parts, state)
                .await
                .unwrap_or(crate::extract::CurrentSession(None));
        if let Some(u) = session.as_ref().and_then(|s| s.user().ok()) {
            return Ok(PageUser(u.clone()));
        }
        let here = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let to = match session.map(|s| s.stage()) {
            Some(app::SessionStage::Password) => login::new_password_path(here),
            _ => format!(
                "/login?{}",
                serde_urlencoded::to_string([("next", here)]).unwrap_or_default()
            ),
        };
        Err(axum::response::Redirect::to(&to).into_response())
    }
}

/// The page frame: language set, one stylesheet, no inline script or style.
pub(crate) fn layout(title: &str, body: Markup) -> Markup {
    layout_clearing(title, None, body)
}

/// The frame, telling the script that the letter draft kept under
/// `saved_draft` has been saved by the server and may be forgotten.
pub(crate) fn layout_clearing(title: &str, saved_draft: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vellum" }
                link rel="stylesheet" href="/static/vellum.css";
                script type="module" src="/static/vellum.js" {}
            }
            @match saved_draft {
                Some(key) => body data-clear-draft={ "draft:" (key) } { main { (body) } },
                None => body { main { (body) } },
            }
        }
    }
}

/// The front page: who is signed in, with a way out; or the way in.
async fn index(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    crate::extract::CurrentSession(session): crate::extract::CurrentSession,
    headers: axum::http::HeaderMap,
) -> Result<Response, crate::Problem> {
    if session
        .as_ref()
        .is_some_and(|s| s.stage() == app::SessionStage::Password)
    {
        return Ok(axum::response::Redirect::to(&login::new_password_path("/")).into_response());
    }
    let Some(user) = session.as_ref().and_then(|s| s.user().ok()).cloned() else {
        return Ok(layout(
            "Vellum",
            html! {
                h1 { "Vellum" }
                p { "Clinical records and correspondence." }
                p { a href="/login" { "Sign in" } }
            },
        )
        .into_response());
    };
    let mut out = axum::http::HeaderMap::new();
    let csrf = crate::cookies::csrf_token_for(&state, session.as_ref(), &headers, &mut out).await?;
    Ok((
        out,
        layout(
            "Vellum",
            html! {
                h1 { "Vellum" }
                p { "Signed in as " strong { (user.username.as_str()) } " (" (user.role.as_str()) ")." }
                nav aria-label="Main" {
                    ul {
                        @match user.role {
                            domain::Role::Clinician => li { a href="/patients" { "Patients" } },
                            domain::Role::Patient => li { a href="/my/letters" { "My letters" } },
                            domain::Role::Admin => {
                                li { a href="/admin/users" { "Users" } }
                                li { a href="/admin/security" { "Security log" } }
                                li { a href="/admin/safety" { "Clinical safety file" } }
                            },
                        }
                        li { a href="/account" { "Your account" } }
                    }
                }
                form method="post" action="/logout" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    button type="submit" { "Sign out" }
                }
            },
        ),
    )
        .into_response())
}

async fn script() -> Response {
    let mut res = include_str!("../../static/vellum.js").into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

async fn stylesheet() -> Response {
    let mut res = include_str!("../../static/vellum.css").into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}
