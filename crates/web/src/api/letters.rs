//! `/api/patients/{id}/letters`: clinical letters.

use app::{LetterDraft, LetterView};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::markdown;
use super::patients::{etag, if_match};
use crate::extract::{ApiJson, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/api/patients/{id}/letters", list)
        .post("/api/patients/{id}/letters", create)
        .get("/api/patients/{id}/letters/{letter_id}", read)
        .put("/api/patients/{id}/letters/{letter_id}", edit)
        .post("/api/patients/{id}/letters/{letter_id}/finalise", finalise)
        .post("/api/patients/{id}/letters/{letter_id}/amend", amend)
        .post(
            "/api/patients/{id}/letters/{letter_id}/entered-in-error",
            entered_in_error,
        )
}

/// A letter with its body rendered (sanitised) beside the Markdown.
#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    letter: LetterView,
    body_html: String,
}

fn shown(letter: LetterView) -> Shown {
    Shown {
        body_html: markdown::render(&letter.body),
        letter,
    }
}

fn respond(status: StatusCode, letter: LetterView) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag(letter.version));
    (status, headers, Json(shown(letter))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LetterBody {
    title: String,
    body: String,
    /// `"draft"` (the default) or `"final"`.
    status: Option<String>,
}

impl LetterBody {
    fn draft(self) -> Result<LetterDraft, Problem> {
        let finalise = match self.status.as_deref() {
            None | Some("draft") => false,
            Some("final") => true,
            Some(_) => {
                return Err(
                    app::AppError::invalid("status", "must be \"draft\" or \"final\"").into(),
                );
            }
        };
        Ok(LetterDraft {
            title: self.title,
            body: self.body,
            finalise,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    page: Option<u32>,
}

async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, Problem> {
    let page = state
        .app
        .letters(&signed_in.user, &id, q.page.unwrap_or(1))
        .await?;
    let items: Vec<Shown> = page.items.into_iter().map(shown).collect();
    Ok(Json(serde_json::json!({"items": items, "next": page.next})).into_response())
}

async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LetterBody>,
) -> Result<Response, Problem> {
    let letter = state
        .app
        .create_letter(&signed_in.user, &id, body.draft()?)
        .await?;
    let mut res = respond(StatusCode::CREATED, letter.clone());
    if let Ok(loc) = format!("/api/patients/{id}/letters/{}", letter.id).parse() {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

async fn read(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, letter_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let letter = state.app.letter(&signed_in.user, &id, &letter_id).await?;
    Ok(respond(StatusCode::OK, letter))
}

async fn edit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, letter_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LetterBody>,
) -> Result<Response, Problem> {
    let letter = state
        .app
        .edit_letter(
            &signed_in.user,
            &id,
            &letter_id,
            if_match(&headers)?,
            body.draft()?,
        )
        .await?;
    Ok(respond(StatusCode::OK, letter))
}

async fn finalise(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, letter_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let letter = state
        .app
        .finalise_letter(&signed_in.user, &id, &letter_id, if_match(&headers)?)
        .await?;
    Ok(respond(StatusCode::OK, letter))
}

async fn amend(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, letter_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<LetterBody>,
) -> Result<Response, Problem> {
    let letter = state
        .app
        .amend_letter(&signed_in.user, &id, &letter_id, body.draft()?)
        .await?;
    Ok(respond(StatusCode::CREATED, letter))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    reason: String,
}

async fn entered_in_error(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, letter_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ErrorBody>,
) -> Result<Response, Problem> {
    let letter = state
        .app
        .mark_letter_entered_in_error(
            &signed_in.user,
            &id,
            &letter_id,
            if_match(&headers)?,
            &body.reason,
        )
        .await?;
    Ok(respond(StatusCode::OK, letter))
}
