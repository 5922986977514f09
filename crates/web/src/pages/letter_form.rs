//! Writing letters: `/patients/{id}/letters/new` (with a preview that
//! needs no JavaScript), continuing a draft, amending a final letter,
//! finalising a draft, and marking a letter entered in error. The patient
//! banner heads every form. With the page script, a new letter and a draft
//! are saved on the server as a draft while they are typed (safety file,
//! H012); without it, nothing is saved until the user presses a button.

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
        .get("/patients/{id}/letters/{letter_id}/edit", edit_form)
        .post("/patients/{id}/letters/{letter_id}/edit", submit_edit)
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
    /// The version of the draft the form edits (absent for a new letter
    /// until the script has saved it as a draft).
    version: Option<i64>,
}

/// Which letter form — the same when it is shown and when it is sent: what
/// heads it, where it is sent, and which letter the script saves it as
/// while it is typed (a new letter, `letter` none until the first save; a
/// draft; amendments are not saved as they are typed).
struct Which<'a> {
    patient: &'a str,
    heading: &'static str,
    action: String,
    autosave: Option<Option<&'a str>>,
}

impl<'a> Which<'a> {
    fn new_letter(patient: &'a str) -> Self {
        Self {
            patient,
            heading: "New letter",
            action: format!("/patients/{patient}/letters/new"),
            autosave: Some(None),
        }
    }

    fn draft(patient: &'a str, letter: &'a str) -> Self {
        Self {
            patient,
            heading: "Continue a draft",
            action: format!("/patients/{patient}/letters/{letter}/edit"),
            autosave: Some(Some(letter)),
        }
    }

    fn amendment(patient: &'a str, letter: &'a str) -> Self {
        Self {
            patient,
            heading: "Correct a letter",
            action: format!("/patients/{patient}/letters/{letter}/amend"),
            autosave: None,
        }
    }
}

/// A letter form as shown: which, under the patient's banner, with the
/// CSRF token; `typed_saves` false turns saving as it is typed off.
struct FormPage<'a> {
    which: &'a Which<'a>,
    banner: &'a Markup,
    csrf: &'a str,
    typed_saves: bool,
}

fn letter_form(page: &FormPage<'_>, f: &LetterForm, error: Option<&str>) -> Markup {
    let Which {
        patient,
        heading,
        action,
        ..
    } = page.which;
    let autosave = page.which.autosave.filter(|_| page.typed_saves);
    layout(
        heading,
        html! {
            (page.banner)
            h1 { (heading) }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action=(action) id="letter-form" data-draft-key={ "draft:" (action) }
                data-autosave-patient=[autosave.map(|_| patient)]
                data-autosave-letter=[autosave.flatten()] {
                input type="hidden" name="csrf_token" value=(page.csrf);
                @if let Some(v) = f.version { input type="hidden" name="version" value=(v); }
                label for="title" { "Title" }
                input id="title" name="title" value=(f.title) required maxlength="200";
                label for="body" { "Letter (Markdown: **bold**, *italic*, lists with -)" }
                textarea id="body" name="body" rows="16" required { (f.body) }
                div class="actions" {
                    button type="submit" name="action" value="preview" { "Preview" }
                    button type="submit" name="action" value="draft" { "Save draft" }
                    button type="submit" name="action" value="final" { "Save as final" }
                }
                @if autosave.is_some() {
                    p class="hint autosave-status" role="status" aria-live="polite" {
                        "Saved on the server as a draft while you type (with the page script on)."
                    }
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

/// A letter form opened: `which`, holding `f`, with the patient's banner
/// and a CSRF token (or the refusal, for a role that writes no letters).
async fn opened(
    state: &AppState,
    user: &domain::User,
    session: Option<&app::ActiveSession>,
    headers: &HeaderMap,
    which: &Which<'_>,
    f: impl AsyncFnOnce() -> Result<LetterForm, Response>,
) -> Result<Response, Problem> {
    let (out, csrf, banner) =
        match csrf_and_banner(state, user, session, headers, which.patient).await? {
            Ok(x) => x,
            Err(r) => return Ok(r),
        };
    let f = match f().await {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let page = FormPage {
        which,
        banner: &banner,
        csrf: &csrf,
        typed_saves: true,
    };
    Ok((out, letter_form(&page, &f, None)).into_response())
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
    let which = Which::new_letter(&id);
    opened(
        &state,
        &user,
        session.as_ref(),
        &headers,
        &which,
        async || Ok(LetterForm::default()),
    )
    .await
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
    sent(
        &state,
        &user,
        &Which::new_letter(&id),
        f,
        async |draft, _| state.app.create_letter(&user, &id, draft).await,
    )
    .await
}

/// A letter form sent: shown again with its preview, or saved by `save`
/// (given the letter and the version the form edits); a refusal the user
/// can act on is shown in the form with everything they typed, anything
/// else as an error page. Saved, the browser is sent to the letter and
/// told to forget the text it kept for this form.
async fn sent(
    state: &AppState,
    user: &domain::User,
    which: &Which<'_>,
    f: LetterForm,
    save: impl AsyncFnOnce(LetterDraft, Option<i64>) -> Result<LetterView, AppError>,
) -> Response {
    let banner = match patient_banner(state, user, which.patient).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let page = FormPage {
        which,
        banner: &banner,
        csrf: &f.csrf_token,
        typed_saves: true,
    };
    if f.action == "preview" {
        return letter_form(&page, &f, None).into_response();
    }
    match save(draft_of(&f), f.version).await {
        Ok(l) => saved(which.patient, &l, &which.action),
        // Changed elsewhere since the form was opened: nothing saved, and
        // the text typed is kept in the form, now against the stored
        // version, so that saving again — a deliberate second press —
        // replaces the other change. Not saved as it is typed from here on.
        Err(AppError::VersionConflict { current }) => (
            StatusCode::PRECONDITION_FAILED,
            letter_form(
                &FormPage {
                    typed_saves: false,
                    ..page
                },
                &LetterForm {
                    version: Some(current),
                    csrf_token: String::new(),
                    title: f.title.clone(),
                    body: f.body.clone(),
                    action: String::new(),
                },
                Some(
                    "This draft was changed elsewhere (another tab or person) since you opened \
                     it, and was not saved. Your text is below: open the draft in another tab \
                     to compare, or save again to replace that change with this text.",
                ),
            ),
        )
            .into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            letter_form(&page, &f, Some(&e.to_string())),
        )
            .into_response(),
        Err(e) => page_error(e),
    }
}

/// Continuing a draft: the form holds the draft as stored, and its
/// version, so a save over a change made elsewhere meanwhile is refused.
async fn edit_form(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    Path((id, letter_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let which = Which::draft(&id, &letter_id);
    opened(
        &state,
        &user,
        session.as_ref(),
        &headers,
        &which,
        async || match state.app.letter(&user, &id, &letter_id).await {
            Ok(l) if l.status == "draft" => Ok(LetterForm {
                title: l.title,
                body: l.body,
                version: Some(l.version),
                ..LetterForm::default()
            }),
            Ok(l) => Err(change_refused(
                &id,
                &l.id,
                AppError::Conflict(app::ONLY_DRAFTS_ARE_EDITED.into()),
            )),
            Err(e) => Err(page_error(e)),
        },
    )
    .await
}

async fn submit_edit(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path((id, letter_id)): Path<(String, String)>,
    Form(f): Form<LetterForm>,
) -> Response {
    let which = Which::draft(&id, &letter_id);
    sent(&state, &user, &which, f, async |draft, version| {
        state
            .app
            .edit_letter(&user, &id, &letter_id, version, draft)
            .await
    })
    .await
}

async fn amend_form(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    Path((id, letter_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let which = Which::amendment(&id, &letter_id);
    opened(
        &state,
        &user,
        session.as_ref(),
        &headers,
        &which,
        async || match state.app.letter(&user, &id, &letter_id).await {
            Ok(old) => Ok(LetterForm {
                title: format!("{} (corrected)", old.title),
                body: old.body,
                ..LetterForm::default()
            }),
            Err(e) => Err(page_error(e)),
        },
    )
    .await
}

async fn submit_amend(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path((id, letter_id)): Path<(String, String)>,
    Form(f): Form<LetterForm>,
) -> Response {
    let which = Which::amendment(&id, &letter_id);
    sent(&state, &user, &which, f, async |draft, _| {
        state.app.amend_letter(&user, &id, &letter_id, draft).await
    })
    .await
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
