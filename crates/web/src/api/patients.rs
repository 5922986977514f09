//! `/api/patients`: demographics (FHIR R4 Patient), history, access log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::extract::{ApiJson, DuplicateCheck, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/api/patients", search)
        .post("/api/patients", create)
        .get("/api/patients/{id}", read)
        .put("/api/patients/{id}", update)
        .get("/api/patients/{id}/history", history)
        .get("/api/patients/{id}/access-log", access_log)
}

/// The version an `If-Match: W/"<version>"` (or `"<version>"`) names.
/// A header that is present but unreadable is an error, not "no header".
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse().map(Some).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-if-match",
            "Unreadable If-Match",
        )
        .detail("If-Match must name a version, e.g. If-Match: W/\"3\"")
    })
}

pub(crate) fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\""))
        .unwrap_or(HeaderValue::from_static("W/\"0\""))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    page: Option<u32>,
    include_inactive: Option<bool>,
}

async fn search(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(q): Query<SearchQuery>,
) -> Result<Response, Problem> {
    let page = state
        .app
        .search_patients(
            &signed_in.user,
            q.q.as_deref().unwrap_or(""),
            q.page.unwrap_or(1),
            q.include_inactive.unwrap_or(false),
        )
        .await?;
    Ok(Json(page).into_response())
}

fn with_version(status: StatusCode, view: app::PatientView) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag(view.version));
    if status == StatusCode::CREATED
        && let Ok(loc) = HeaderValue::from_str(&format!("/api/patients/{}", view.id))
    {
        headers.insert(header::LOCATION, loc);
    }
    (status, headers, Json(view)).into_response()
}

async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    DuplicateCheck(if_duplicate): DuplicateCheck,
    ApiJson(resource): ApiJson<serde_json::Value>,
) -> Result<Response, Problem> {
    let view = state
        .app
        .create_patient(&signed_in.user, &resource, if_duplicate)
        .await?;
    Ok(with_version(StatusCode::CREATED, view))
}

async fn read(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = state.app.patient(&signed_in.user, &id).await?;
    Ok(with_version(StatusCode::OK, view))
}

/// Accepts the resource alone or wrapped as `{"resource": …}` (the shape
/// GET returns).
async fn update(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    DuplicateCheck(if_duplicate): DuplicateCheck,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, Problem> {
    let expected = if_match(&headers)?;
    let resource = body.get("resource").cloned().unwrap_or(body);
    let view = state
        .app
        .update_patient(&signed_in.user, &id, expected, &resource, if_duplicate)
        .await?;
    Ok(with_version(StatusCode::OK, view))
}

async fn history(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let versions = state.app.patient_history(&signed_in.user, &id).await?;
    Ok(Json(serde_json::json!({"items": versions})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Before {
    before: Option<i64>,
}

async fn access_log(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(b): Query<Before>,
) -> Result<Response, Problem> {
    let rows = state
        .app
        .patient_access_log(&signed_in.user, &id, b.before)
        .await?;
    Ok(Json(serde_json::json!({"items": rows})).into_response())
}
