//! Writing letters: `/patients/{id}/letters/new` (with a preview that
//! needs no JavaScript), amending a final letter, finalising a draft, and
//! marking a letter entered in error. The patient banner heads every form.

use app::{AppError, LetterDraft, LetterView};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::clinical::{page_error, patient_banner};
use super::{PageUser, layout};
use crate::api::markdown;
use crate::extract::CurrentSession;
use crate::routes::Routes;
use crate::{AppState, Problem, cookies};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/patients/{id}/letters/new", new_form)
        .post("/patients/{id}/letters/new", submit_new)
        .get("/patients/{id}/letters/{letter_id}/amend", amend_form)
        .post("/patients/{id}/letters/{letter_id}/amend", submit_amend)
        .post("/patients/{id}/letters/{letter_id}/finalise", finalise)
        .post(
            "/patients/{id}/letters/{letter_id}/entered-in-error",
            entered_in_error,
        )
}

#[derive(Debug, Default, Deserialize)]
struct LetterForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    /// `preview`, `draft` or `final`.
    #[serde(default)]
    action: String,
}

fn letter_form(
    banner: &Markup,
    heading: &str,
    action: &str,
    csrf: &str,
    f: &LetterForm,
    error: Option<&str>,
) -> Markup {
    layout(
        heading,
        html! {
            (banner)
            h1 { (heading) }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action=(action) id="letter-form" data-draft-key={ "draft:" (action) } {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="title" { "Title" }
                input id="title" name="title" value=(f.title) required maxlength="200";
                label for="body" { "Letter (Markdown: **bold**, *italic*, lists with -)" }
                textarea id="body" name="body" rows="16" required { (f.body) }
                div class="actions" {
                    button type="submit" name="action" value="preview" { "Preview" }
                    button type="submit" name="action" value="draft" { "Save draft" }
                    button type="submit" name="action" value="final" { "Save as final" }
                }
            }
            @if f.action == "preview" {
                section class="preview" aria-label="Preview" {
                    h2 { "Preview" }
                    div class="letter-body" { (PreEscaped(markdown::render(&f.body))) }
                }
            }
        },
    )
}

async fn csrf_and_banner(
    state: &AppState,
    user: &domain::User,
    session: Option<&app::ActiveSession>,
    headers: &HeaderMap,
    id: &str,
) -> Result<Result<(HeaderMap, String, Markup), Response>, Problem> {
    if let Some(refusal) = super::refuse_unless(user, domain::access::Action::WriteLetters) {
        return Ok(Err(refusal));
    }
    let banner = match patient_banner(state, user, id).await {
        Ok(b) => b,
        Err(r) => return Ok(Err(r)),
    };
    let mut out = HeaderMap::new();
    let csrf = cookies::csrf_token_for(state, session, headers, &mut out).await?;
    Ok(Ok((out, csrf, banner)))
}

async fn new_form(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (out, csrf, banner) =
        match csrf_and_banner(&state, &user, session.as_ref(), &headers, &id).await? {
            Ok(x) => x,
            Err(r) => return Ok(r),
        };
    let action = format!("/patients/{id}/letters/new");
    let page = letter_form(
        &banner,
        "New letter",
        &action,
        &csrf,
        &LetterForm::default(),
        None,
    );
    Ok((out, page).into_response())
}

fn draft_of(f: &LetterForm) -> LetterDraft {
    LetterDraft {
        title: f.title.clone(),
        body: f.body.clone(),
        finalise: f.action == "final",
    }
}

fn show(id: &str, l: &LetterView) -> Response {
    Redirect::to(&format!("/patients/{id}/letters/{}", l.id)).into_response()
}

/// After a save from a form: the letter, telling the browser that the
/// draft it kept for `form` is saved.
fn saved(id: &str, l: &LetterView, form: &str) -> Response {
    let q = serde_urlencoded::to_string([("saved", form)]).unwrap_or_default();
    Redirect::to(&format!("/patients/{id}/letters/{}?{q}", l.id)).into_response()
}

async fn submit_new(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
    Form(f): Form<LetterForm>,
) -> Response {
    let action = format!("/patients/{id}/letters/new");
    let banner = match patient_banner(&state, &user, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if f.action == "preview" {
        return letter_form(&banner, "New letter", &action, &f.csrf_token, &f, None)
            .into_response();
    }
    match state.app.create_letter(&user, &id, draft_of(&f)).await {
        Ok(l) => saved(&id, &l, &action),
        Err(AppError::Invalid { field, message }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            letter_form(
                &banner,
                "New letter",
                &action,
                &f.csrf_token,
                &f,
                Some(&format!("{field} {message}")),
            ),
        )
            .into_response(),
        Err(e) => page_error(e),
    }
}

async fn amend_form(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    Path((id, letter_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (out, csrf, banner) =
        match csrf_and_banner(&state, &user, session.as_ref(), &headers, &id).await? {
            Ok(x) => x,
            Err(r) => return Ok(r),
        };
    let old = match state.app.letter(&user, &id, &letter_id).await {
        Ok(l) => l,
        Err(e) => return Ok(page_error(e)),
    };
    let f = LetterForm {
        title: format!("{} (corrected)", old.title),
        body: old.body,
        ..LetterForm::default()
    };
    let action = format!("/patients/{id}/letters/{letter_id}/amend");
    let page = letter_form(&banner, "Correct a letter", &action, &csrf, &f, None);
    Ok((out, page).into_response())
}

async fn submit_amend(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path((id, letter_id)): Path<(String, String)>,
    Form(f): Form<LetterForm>,
) -> Response {
    let action = format!("/patients/{id}/letters/{letter_id}/amend");
    let banner = match patient_banner(&state, &user, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if f.action == "preview" {
        return letter_form(
            &banner,
            "Correct a letter",
            &action,
            &f.csrf_token,
            &f,
            None,
        )
        .into_response();
    }
    match state
        .app
        .amend_letter(&user, &id, &letter_id, draft_of(&f))
        .await
    {
        Ok(l) => show(&id, &l),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            letter_form(
                &banner,
                "Correct a letter",
                &action,
                &f.csrf_token,
                &f,
                Some(&e.to_string()),
            ),
        )
            .into_response(),
        Err(e) => page_error(e),
    }
}

#[derive(Deserialize)]
struct VersionForm {
    version: Option<i64>,
    #[serde(default)]
    reason: String,
}

async fn finalise(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path((id, letter_id)): Path<(String, String)>,
    Form(f): Form<VersionForm>,
) -> Response {
    match state
        .app
        .finalise_letter(&user, &id, &letter_id, f.version)
        .await
    {
        Ok(l) => show(&id, &l),
        Err(e) => change_refused(&id, &letter_id, e),
    }
}

async fn entered_in_error(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path((id, letter_id)): Path<(String, String)>,
    Form(f): Form<VersionForm>,
) -> Response {
    match state
        .app
        .mark_letter_entered_in_error(&user, &id, &letter_id, f.version, &f.reason)
        .await
    {
        Ok(l) => show(&id, &l),
        Err(e) => change_refused(&id, &letter_id, e),
    }
}

/// A refused change to a letter, with the way back to it.
fn change_refused(id: &str, letter_id: &str, e: AppError) -> Response {
    let (status, text) = match &e {
        AppError::VersionConflict { .. } => (
            StatusCode::PRECONDITION_FAILED,
            "The letter changed while you had it open. Open it again and check it.".to_owned(),
        ),
        AppError::Conflict(what) => (StatusCode::CONFLICT, what.clone()),
        AppError::Invalid { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field} {message}"),
        ),
        _ => return page_error(e),
    };
    (
        status,
        layout(
            "Not changed",
            html! {
                h1 { "The letter was not changed" }
                p class="error" role="alert" { (text) }
                p { a href={ "/patients/" (id) "/letters/" (letter_id) } { "Back to the letter" } }
            },
        ),
    )
        .into_response()
}
