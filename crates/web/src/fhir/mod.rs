//! The FHIR R4 API under `/fhir/R4`: Patient and DocumentReference (letters).
//!
//! The same app use cases as the JSON API — the same authorisation and the
//! same access log — with FHIR's shapes: `application/fhir+json`,
//! `meta.versionId`, weak `ETag`s, Bundles, and every error as an
//! `OperationOutcome` (see [`outcome`], which also covers errors raised by
//! the session and CSRF layers before a handler runs).

mod bundle;
mod capability;
mod document;
pub(crate) mod outcome;
mod patient;
mod search;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::routes::Routes;
use crate::{AppState, Problem};

/// Where the FHIR API is mounted.
pub(crate) const BASE_PATH: &str = "/fhir/R4";

/// The media type of every FHIR answer.
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub(crate) fn routes(r: Routes) -> Routes {
    let r = r.get("/fhir/R4/metadata", capability::metadata);
    let r = patient::routes(r);
    document::routes(r)
}

/// The absolute base URL of the FHIR API (for `fullUrl`, links, Location).
pub(crate) fn base_url(state: &AppState) -> String {
    format!(
        "{}{BASE_PATH}",
        state.web.public_origin.trim_end_matches('/')
    )
}

/// A FHIR JSON answer, with `ETag: W/"<version>"` when there is a version.
pub(crate) fn respond(
    status: StatusCode,
    body: &serde_json::Value,
    version: Option<i64>,
    location: Option<String>,
) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    if let Some(v) = version {
        headers.insert(header::ETAG, crate::api::etag(v));
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, loc);
    }
    (status, headers, body.to_string()).into_response()
}

/// 400 for a FHIR request that cannot be understood.
pub(crate) fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "fhir-bad-request",
        "Invalid FHIR request",
    )
    .detail(detail)
}
