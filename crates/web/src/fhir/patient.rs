//! `Patient`: read, vread, history, search, create, update.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::bundle::{self, Entry, Version};
use super::search::{PATIENT_PARAMS, Query};
use super::{bad_request, base_url, respond};
use crate::api::if_match;
use crate::extract::{ApiJson, DuplicateCheck, SignedIn};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/fhir/R4/Patient", search)
        .post("/fhir/R4/Patient", create)
        .get("/fhir/R4/Patient/{id}", read)
        .put("/fhir/R4/Patient/{id}", update)
        .get("/fhir/R4/Patient/{id}/_history", history)
        .get("/fhir/R4/Patient/{id}/_history/{version}", vread)
}

fn one(state: &AppState, status: StatusCode, view: &app::PatientView) -> Response {
    let location = (status == StatusCode::CREATED).then(|| {
        format!(
            "{}/Patient/{}/_history/{}",
            base_url(state),
            view.id,
            view.version
        )
    });
    respond(status, &view.resource, Some(view.version), location)
}

async fn read(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = state.app.patient(&signed_in.user, &id).await?;
    Ok(one(&state, StatusCode::OK, &view))
}

async fn vread(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let versions = state.app.patient_history(&signed_in.user, &id).await?;
    let wanted: Option<i64> = version.parse().ok();
    let v = versions
        .into_iter()
        .find(|v| Some(v.version) == wanted)
        .ok_or_else(|| {
            Problem::not_found().detail(format!("Patient/{id} has no version {version}."))
        })?;
    Ok(respond(StatusCode::OK, &v.resource, Some(v.version), None))
}

async fn history(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let versions = state.app.patient_history(&signed_in.user, &id).await?;
    let versions = versions
        .into_iter()
        .map(|v| Version {
            version: v.version,
            recorded_rfc3339: v.recorded_at.to_rfc3339(),
            resource: v.resource,
        })
        .collect();
    let body = bundle::history(
        &base_url(&state),
        &state.app.now().to_rfc3339(),
        "Patient",
        &id,
        versions,
    );
    Ok(respond(StatusCode::OK, &body, None, None))
}

async fn search(
    State(state): State<AppState>,
    signed_in: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let query = Query::parse(raw.as_deref(), PATIENT_PARAMS)?;
    let page = query.page()?;
    let found = state
        .app
        .find_patients(&signed_in.user, query.patient_search()?, page)
        .await?;
    let base = base_url(&state);
    let entries = found
        .items
        .into_iter()
        .map(|v| Entry {
            kind: "Patient",
            id: v.id,
            resource: v.resource,
        })
        .collect();
    let body = bundle::searchset(
        &base,
        &state.app.now().to_rfc3339(),
        &format!("{base}/Patient?{}", query.with_page(page)),
        found
            .next
            .map(|n| format!("{base}/Patient?{}", query.with_page(n))),
        entries,
    );
    Ok(respond(StatusCode::OK, &body, None, None))
}

async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    DuplicateCheck(if_duplicate): DuplicateCheck,
    ApiJson(resource): ApiJson<Value>,
) -> Result<Response, Problem> {
    let view = state
        .app
        .create_patient(&signed_in.user, &resource, if_duplicate)
        .await?;
    Ok(one(&state, StatusCode::CREATED, &view))
}

/// FHIR update: the body is the whole resource with the id of the URL; the
/// version it was based on must be named in `If-Match`.
async fn update(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    DuplicateCheck(if_duplicate): DuplicateCheck,
    headers: HeaderMap,
    ApiJson(resource): ApiJson<Value>,
) -> Result<Response, Problem> {
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(bad_request(format!(
                "The resource's id {body_id} is not the id in the URL ({id})."
            )));
        }
        None => {
            return Err(bad_request(
                "The resource must carry its id, as in the URL.",
            ));
        }
    }
    let expected = if_match(&headers)?;
    let view = state
        .app
        .update_patient(&signed_in.user, &id, expected, &resource, if_duplicate)
        .await?;
    Ok(one(&state, StatusCode::OK, &view))
}
