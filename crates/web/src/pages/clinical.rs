//! The clinical pages: finding a patient, the patient's record, a letter,
//! and the patient portal. The patient in context — name, NHS number, date
//! of birth — heads every patient-scoped page, so nothing is read or written
//! for the wrong person; a missing field says so rather than showing blank.

use app::{AppError, LetterView, PatientView};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::patient::{BirthDate, Demographics};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::{PageUser, layout, layout_clearing};
use crate::AppState;
use crate::api::markdown;
use crate::routes::Routes;

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/patients", patients)
        .get("/patients/{id}", patient)
        .get("/patients/{id}/letters/{letter_id}", letter)
        .get("/my/letters", my_letters)
}

/// A refusal or absence as a page (never a JSON document to a browser).
pub(crate) fn page_error(e: AppError) -> Response {
    let (status, title, text) = match e {
        AppError::Forbidden => (
            StatusCode::FORBIDDEN,
            "Not available to you",
            "Your role does not give access to this page.",
        ),
        AppError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here, or it is not yours to see.",
        ),
        other => return crate::Problem::from(other).into_response(),
    };
    (
        status,
        layout(
            title,
            html! { h1 { (title) } p { (text) } p { a href="/" { "Home" } } },
        ),
    )
        .into_response()
}

fn missing() -> Markup {
    html! { em class="missing" { "not recorded" } }
}

/// The demographics of a stored version, parsed back into domain types.
fn demographics(view: &PatientView) -> Result<Demographics, crate::Problem> {
    // Stored versions were checked when written; only the shape is read here.
    let today = BirthDate::from_unix_millis(i64::MAX / 2);
    Demographics::from_fhir(&view.resource, &today).map_err(|errors| {
        tracing::error!(patient = %view.id, ?errors, "a stored patient does not parse");
        crate::Problem::internal()
    })
}

/// Who this page is about, always on top.
pub(crate) fn banner(id: &str, d: &Demographics) -> Markup {
    html! {
        section class="patient-banner" aria-label="Patient" {
            span class={ "avatar g" (app::avatar_gradient(id)) } aria-hidden="true" {}
            strong class="patient-name" { (d.display_name()) }
            span { "NHS number " @match &d.nhs_number { Some(n) => strong { (n.formatted()) }, None => (missing()) } }
            span { "Born " @match &d.birth_date { Some(b) => strong { (b.as_str()) }, None => (missing()) } }
            @if !d.active { span class="inactive" { "Inactive record" } }
        }
    }
}

/// The banner of a patient the user may read, or the page that says why not.
pub(crate) async fn patient_banner(
    state: &AppState,
    user: &domain::User,
    id: &str,
) -> Result<Markup, Response> {
    let view = state.app.patient(user, id).await.map_err(page_error)?;
    let d = demographics(&view).map_err(IntoResponse::into_response)?;
    Ok(banner(id, &d))
}

#[derive(Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    page: Option<u32>,
}

async fn patients(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<SearchQuery>,
) -> Response {
    let text = q.q.unwrap_or_default();
    let page = q.page.unwrap_or(1).max(1);
    let found = match state.app.search_patients(&user, &text, page, false).await {
        Ok(f) => f,
        Err(e) => return page_error(e),
    };
    let next = found.next.map(|n| {
        format!(
            "/patients?{}",
            serde_urlencoded::to_string([("q", text.as_str()), ("page", &n.to_string())])
                .unwrap_or_default()
        )
    });
    layout(
        "Patients",
        html! {
            h1 { "Patients" }
            p { a href="/patients/new" { "New patient" } }
            form method="get" action="/patients" role="search" {
                label for="q" { "Name, NHS number or date of birth (YYYY-MM-DD)" }
                input id="q" name="q" type="search" value=(text) autofocus data-instant;
                button type="submit" { "Search" }
            }
            div id="results" aria-live="polite" {}
            @if found.items.is_empty() {
                p { "No patients found." }
            } @else {
                table class="patients" {
                    thead { tr { th {} th { "Name" } th { "NHS number" } th { "Born" } } }
                    tbody {
                        @for p in &found.items {
                            tr {
                                td { span class={ "avatar g" (p.avatar_gradient) } aria-hidden="true" {} }
                                td { a href={ "/patients/" (p.id) } { (p.display_name) } }
                                td { @match p.nhs_number.as_deref().and_then(|n| domain::patient::NhsNumber::parse(n).ok()) {
                                    Some(n) => (n.formatted()), None => (missing()) } }
                                td { @match &p.birth_date { Some(b) => (b), None => (missing()) } }
                            }
                        }
                    }
                }
            }
            @if let Some(n) = next { p { a href=(n) rel="next" { "Next page" } } }
        },
    )
    .into_response()
}

async fn patient(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Response {
    let view = match state.app.patient(&user, &id).await {
        Ok(v) => v,
        Err(e) => return page_error(e),
    };
    let d = match demographics(&view) {
        Ok(d) => d,
        Err(p) => return p.into_response(),
    };
    let letters = match state.app.letters(&user, &id, 1).await {
        Ok(l) => l,
        Err(e) => return page_error(e),
    };
    let history = match state.app.patient_history(&user, &id).await {
        Ok(h) => h,
        Err(e) => return page_error(e),
    };
    // Who saw or changed the record: for clinicians.
    let access = if super::may(&user, domain::access::Action::ReadAccessLog) {
        match state.app.patient_access_log(&user, &id, None).await {
            Ok(a) => Some(a),
            Err(e) => return page_error(e),
        }
    } else {
        None
    };
    layout(
        &d.display_name(),
        html! {
            (banner(&id, &d))
            h1 { "Demographics" }
            p { a href={ "/patients/" (id) "/edit" } { "Edit demographics" } }
            dl class="demographics" {
                dt { "Name" } dd { (d.display_name()) }
                dt { "NHS number" } dd { @match &d.nhs_number { Some(n) => (n.formatted()), None => (missing()) } }
                dt { "Local number (MRN)" } dd { @match &d.mrn { Some(m) => (m), None => (missing()) } }
                dt { "Date of birth" } dd { @match &d.birth_date { Some(b) => (b.as_str()), None => (missing()) } }
                dt { "Gender" } dd { @match d.gender { Some(g) => (g.as_str()), None => (missing()) } }
                dt { "Address" } dd {
                    @if d.address.is_empty() { (missing()) }
                    @for a in &d.address {
                        (a.line.join(", "))
                        @if let Some(c) = &a.city { ", " (c) }
                        @if let Some(p) = &a.postal_code { " " (p) }
                    }
                }
                dt { "Contact" } dd {
                    @if d.telecom.is_empty() { (missing()) }
                    @for t in &d.telecom { (t.system) ": " (t.value) br; }
                }
                dt { "Version" } dd { (view.version) }
            }
            h2 { "Versions" }
            ol class="versions" reversed {
                @for v in history.iter().rev() {
                    li { "Version " (v.version) ", " (v.recorded_at.to_rfc3339()) " by " (v.recorded_by) }
                }
            }
            @if let Some(rows) = &access {
                h2 { "Access history" }
                table class="access" {
                    thead { tr { th { "When" } th { "Who" } th { "What" } th { "Outcome" } } }
                    tbody {
                        @for r in rows.iter().take(50) {
                            tr {
                                td { (domain::Timestamp(r.at).to_rfc3339()) }
                                td { (r.username) " (" (r.role) ")" }
                                td { (r.action) " " (r.resource_type) }
                                td { (r.outcome) }
                            }
                        }
                    }
                }
            }
            h2 { "Letters" }
            p { a href={ "/patients/" (id) "/letters/new" } { "Write a letter" } }
            @if letters.items.is_empty() { p { "No letters." } }
            ul class="letters" {
                @for l in &letters.items {
                    li { a href={ "/patients/" (id) "/letters/" (l.id) } { (l.title) } " — " (l.status) ", " (l.created_at.to_rfc3339()) }
                }
            }
        },
    )
    .into_response()
}

fn letter_article(l: &LetterView) -> Markup {
    html! {
        article class="letter" {
            h2 { (l.title) }
            p class="hint" { "By " (l.author.username) ", " (l.created_at.to_rfc3339()) " — " (l.status) }
            @if let Some(r) = &l.error_reason { p class="error" { "Entered in error: " (r) } }
            @if let Some(by) = &l.superseded_by { p class="hint" { "Superseded by a correction (" (by) ")." } }
            // Rendered only through the sanitiser.
            div class="letter-body" { (PreEscaped(markdown::render(&l.body))) }
        }
    }
}

async fn letter(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    crate::extract::CurrentSession(session): crate::extract::CurrentSession,
    Path((id, letter_id)): Path<(String, String)>,
    Query(q): Query<SavedQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let view = match state.app.patient(&user, &id).await {
        Ok(v) => v,
        Err(e) => return page_error(e),
    };
    let d = match demographics(&view) {
        Ok(d) => d,
        Err(p) => return p.into_response(),
    };
    let l = match state.app.letter(&user, &id, &letter_id).await {
        Ok(l) => l,
        Err(e) => return page_error(e),
    };
    let clinician = super::may(&user, domain::access::Action::WriteLetters);
    let mut out = axum::http::HeaderMap::new();
    let csrf = if clinician {
        match crate::cookies::csrf_token_for(&state, session.as_ref(), &headers, &mut out).await {
            Ok(c) => Some(c),
            Err(p) => return p.into_response(),
        }
    } else {
        None
    };
    let base = format!("/patients/{id}/letters/{}", l.id);
    // Only a form of this patient's letters names a draft to forget.
    let saved = q
        .saved
        .filter(|s| s.starts_with(&format!("/patients/{id}/letters/")));
    let page = layout_clearing(
        &l.title,
        saved.as_deref(),
        html! {
            (banner(&id, &d))
            (letter_article(&l))
            @if let Some(csrf) = csrf {
                nav class="letter-actions" aria-label="Letter actions" {
                    @if l.status == "draft" {
                        p { a href={ (base) "/edit" } { "Continue this draft" } }
                        form method="post" action={ (base) "/finalise" } {
                            input type="hidden" name="csrf_token" value=(csrf);
                            input type="hidden" name="version" value=(l.version);
                            button type="submit" { "Finalise" }
                        }
                    }
                    @if l.status == "final" && l.superseded_by.is_none() {
                        p { a href={ (base) "/amend" } { "Correct this letter (amend)" } }
                    }
                    @if l.status != "entered-in-error" {
                        form method="post" action={ (base) "/entered-in-error" } {
                            input type="hidden" name="csrf_token" value=(csrf);
                            input type="hidden" name="version" value=(l.version);
                            label for="reason" { "Reason it was made in error" }
                            input id="reason" name="reason" required;
                            button type="submit" { "Mark entered in error" }
                        }
                    }
                }
            }
        },
    );
    (out, page).into_response()
}

/// The patient portal: a patient's own final letters.
async fn my_letters(State(state): State<AppState>, PageUser(user): PageUser) -> Response {
    let Ok(Some(pid)) = state.app.linked_patient(&user).await else {
        return page_error(AppError::Forbidden);
    };
    let letters = match state.app.letters(&user, &pid, 1).await {
        Ok(l) => l,
        Err(e) => return page_error(e),
    };
    layout(
        "My letters",
        html! {
            h1 { "My letters" }
            @if letters.items.is_empty() { p { "You have no letters yet." } }
            @for l in &letters.items { (letter_article(l)) }
        },
    )
    .into_response()
}
