//! Errors on the FHIR API as `OperationOutcome`s, and content negotiation.
//!
//! One layer, outermost, for every request under `/fhir/`: a client asking
//! for a format other than JSON gets 406; any problem document produced
//! inside — by a handler, an extractor, the session layer, the CSRF guard,
//! the fallback or the panic catcher — is rewritten as an `OperationOutcome`
//! with the same status, headers and wording.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::FHIR_JSON;
use crate::Problem;

/// Problem documents are small; anything larger is not one of ours.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

pub(crate) async fn layer(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/fhir/") {
        return next.run(req).await;
    }
    if let Some(refusal) = unacceptable(req.headers(), req.uri().query()) {
        return to_outcome(refusal.into_response()).await;
    }
    let res = next.run(req).await;
    to_outcome(res).await
}

/// 406 unless the client accepts JSON (by `Accept` or `_format`).
fn unacceptable(headers: &HeaderMap, query: Option<&str>) -> Option<Problem> {
    let format = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "_format")
            .map(|(_, v)| v)
    });
    if let Some(f) = format
        && !matches!(
            f.as_str(),
            "json" | "application/json" | "application/fhir+json"
        )
    {
        return Some(not_acceptable(&format!("_format={f}")));
    }
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if accept.is_empty() {
        return None;
    }
    let json_ok = accept.iter().flat_map(|v| v.split(',')).any(|range| {
        let mime = range.split(';').next().unwrap_or("").trim();
        matches!(mime, "*/*" | "application/*" | "application/json") || mime.ends_with("+json")
    });
    (!json_ok).then(|| not_acceptable(&format!("Accept: {}", accept.join(", "))))
}

fn not_acceptable(asked: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        "not-acceptable",
        "Format not supported",
    )
    .detail(format!(
        "This server speaks FHIR JSON only (application/fhir+json); the request asked for {asked}."
    ))
}

/// The FHIR issue type for an HTTP status.
fn issue_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid",
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 | 406 | 415 => "not-supported",
        409 => "duplicate",
        412 => "conflict",
        413 => "too-long",
        428 => "required",
        429 => "throttled",
        s if s >= 500 => "exception",
        _ => "processing",
    }
}

async fn to_outcome(res: Response) -> Response {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    let (mut parts, body) = res.into_parts();
    if !is_problem && parts.status.is_success() {
        return Response::from_parts(parts, body);
    }
    let problem: Value = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) if is_problem => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let outcome = outcome_of(parts.status, &problem);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(outcome.to_string()))
}

/// An `OperationOutcome` saying what the problem document says: one issue
/// for the problem, and one per field error, pointing at the field.
pub(crate) fn outcome_of(status: StatusCode, problem: &Value) -> Value {
    let text = |k: &str| problem.get(k).and_then(Value::as_str);
    let title = text("title")
        .or(status.canonical_reason())
        .unwrap_or("Error");
    let diagnostics = match text("detail") {
        Some(d) => format!("{title}: {d}"),
        None => title.to_owned(),
    };
    // A request cut off at the server's deadline is FHIR's `timeout`.
    let code = match text("type") {
        Some("/problems/timeout") => "timeout",
        _ => issue_code(status),
    };
    let mut issues = vec![json!({
        "severity": "error",
        "code": code,
        "details": {"text": title},
        "diagnostics": diagnostics,
    })];
    for e in problem
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = e.get("field").and_then(Value::as_str).unwrap_or("");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        issues.push(json!({
            "severity": "error",
            "code": "invalid",
            "diagnostics": format!("{field}: {message}"),
            "expression": [field],
        }));
    }
    // A new patient refused as a possible duplicate: one issue per record
    // it may duplicate, naming it as a FHIR reference.
    for p in problem
        .get("possible_duplicates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |k: &str| p.get(k).and_then(Value::as_str);
        let id = field("id").unwrap_or("");
        issues.push(json!({
            "severity": "information",
            "code": "duplicate",
            "diagnostics": format!(
                "Possible duplicate: Patient/{id} ({}, born {}, {})",
                field("display_name").unwrap_or(""),
                field("birth_date").unwrap_or("not recorded"),
                field("nhs_number").map_or("no NHS number".to_owned(), |n| format!("NHS number {n}")),
            ),
        }));
    }
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_become_issues_pointing_at_the_field() {
        let p = json!({
            "type": "/problems/invalid-input", "title": "Invalid input", "status": 422,
            "detail": "gender: must be one of male, female, other, unknown",
            "errors": [{"field": "gender", "message": "must be one of male, female, other, unknown"}]
        });
        let o = outcome_of(StatusCode::UNPROCESSABLE_ENTITY, &p);
        assert_eq!(o["resourceType"], "OperationOutcome");
        assert_eq!(o["issue"][0]["code"], "invalid");
        assert_eq!(o["issue"][1]["expression"][0], "gender");
    }

    #[test]
    fn statuses_map_to_fhir_issue_types() {
        assert_eq!(issue_code(StatusCode::NOT_FOUND), "not-found");
        assert_eq!(issue_code(StatusCode::PRECONDITION_FAILED), "conflict");
        assert_eq!(issue_code(StatusCode::FORBIDDEN), "forbidden");
        assert_eq!(issue_code(StatusCode::INTERNAL_SERVER_ERROR), "exception");
    }

    #[test]
    fn only_json_is_acceptable() {
        let mut h = HeaderMap::new();
        assert!(unacceptable(&h, None).is_none());
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/fhir+xml"),
        );
        assert!(unacceptable(&h, None).is_some());
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/fhir+xml;q=0.9, application/fhir+json"),
        );
        assert!(unacceptable(&h, None).is_none());
        assert!(unacceptable(&HeaderMap::new(), Some("_format=xml")).is_some());
        assert!(unacceptable(&HeaderMap::new(), Some("_format=json")).is_none());
    }
}
